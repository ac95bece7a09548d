"""One module per stage; each reads its inputs from the run directory and writes its outputs there."""
