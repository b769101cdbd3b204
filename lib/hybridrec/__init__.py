"""hybridrec — poster-aware hybrid recommendations as Spark + Delta batch jobs.

Importing the package is cheap: it never imports TensorFlow (the embed/train stages import
it inside their worker functions).
"""

__version__ = "0.1.0"

