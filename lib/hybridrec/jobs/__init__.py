"""Job entry points: ``main(argv) -> int`` each; thin — parse args, build the session, call lib."""
