"""`python -m seqflow`: the operator's command line (seqflow.cli.main)."""

from seqflow.cli.main import main

if __name__ == "__main__":
    main()
