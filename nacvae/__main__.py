"""``python -m nacvae ...`` (and ``torchrun -m nacvae ...``) runs the command-line interface."""

from nacvae.cli.main import main

main()
