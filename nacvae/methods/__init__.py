"""Pretraining methods, one module each: its ``SPEC`` (read by ``nacvae.registry``), the
``Method`` that holds its state, and ``build``, which makes it for a run."""
