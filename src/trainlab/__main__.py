"""`python -m trainlab`: the same as the `trainlab` command (sweep workers start this way)."""


from trainlab.cli import main

main()
