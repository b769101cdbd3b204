"""The features layer: poster images, the CNN backbones, the genre classifier (its TF-free data
side, its Keras model, and the loader that feeds it), and the readers of the feature tables
(poster embeddings, the classifier's categories and features). TensorFlow is imported inside
functions only."""
