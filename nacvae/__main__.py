"""``python -m nacvae ...`` (and ``torchrun -m nacvae ...``) runs the command-line interface."""

from cli.main import main

main()
