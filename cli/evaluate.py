"""``nacvae eval linear | retrieval | knn | codes | gap``: the paper's downstream evaluations and the VAE inference gap."""

from __future__ import annotations

import functools
import json
import math

import click

from nacvae.cli.options import data_options


# A run that cannot be written (a colleague's) is evaluated all the same: see _report.
_no_record = click.option("--no-record", is_flag=True, help="Do not append the result to the run's metrics.jsonl.")


def _encoder_options(command, linear: bool = False):
    """Options shared by every evaluation: what to evaluate, on which data, where (``linear``:
    the linear probe's own words, where it differs)."""
    options = [
        click.option("--run", type=click.Path(file_okay=False), default=None, help="A pretraining run folder."),
        click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
                     help="A pretraining checkpoint" + (" (also a plain backbone state dict with --arch)." if linear
                                                        else ".")),
        click.option("--init", type=click.Choice(["random"]), default=None,
                     help="Evaluate a randomly initialised encoder: the baseline."),
        click.option("--arch", default=None,
                     help="Backbone of the random baseline [the dataset's default]; with --run/--checkpoint it must match."),
        click.option("--code-dim", type=int, default=None, help="Code length D of the random baseline [128]."),
        data_options(
            default=None,
            data_help="Dataset: digits, fashion-mnist, cifar10, imagenet, flickr25k or folder:PATH [the run's; digits "
                      "for --init].",
            dir_help="Where datasets live [the run's, else $NACVAE_DATA_DIR or ~/.cache/nacvae/data].",
        ),
        click.option("--image-size", type=int, default=None,
                     help="Side folder images are resized to, for --init random [32; imagenet, flickr25k: 224]."),
        click.option("--workers", type=int, default=None,
                     help="DataLoader worker processes that decode streamed datasets [the cores but one, at most 8]."),
        click.option("--skip-bad-images", is_flag=True,
                     help="Streamed datasets: replace an unreadable image by the next readable one and count it, "
                          "instead of stopping (docs/guide.md)."),
        click.option("--batch-size", type=int, default=1000, show_default=True, help="Images per batch."),
        click.option("--seed", type=int, default=0, show_default=True,
                     help="Seed of the random baseline's weights" + (" (and of the linear classifier)." if linear
                                                                     else ".")),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."),
        click.option("--amp/--no-amp", default=None,
                     help="bf16 autocast for the encoder's forward passes (the probe, distances and statistics stay "
                          "float32) [$NACVAE_AMP, else auto: GPUs with native bf16; CPUs with native bf16 where a "
                          "timed forward pass is at least 1.15x faster]; the result's amp field says which ran."),
        click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text."),
        click.option("--quiet", is_flag=True, help="No progress bars (they are drawn only on a terminal, never with --json)."),
        _no_record,
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _prepare(opts: dict):
    """(encoder, meta, data, data_dir, device, image size) from the shared options."""
    from nacvae.checks import check_seed
    from nacvae.devices import resolve_device
    from nacvae.errors import ConfigError
    from nacvae.eval.encoders import resolve_encoder

    check_seed(opts["seed"])  # before the encoder is loaded
    device = resolve_device(opts["device"])
    encoder, meta, data, data_dir = resolve_encoder(
        run=opts["run"], checkpoint=opts["checkpoint"], init=opts["init"], arch=opts["arch"],
        data=opts["data"], data_dir=opts["data_dir"], seed=opts["seed"], code_dim=opts["code_dim"],
        image_size=opts["image_size"], download=opts["download"])
    size = int(meta["image_shape"][-1])
    if opts["image_size"] is not None and opts["image_size"] != size:
        raise ConfigError(f"The encoder takes {size}x{size} images; --image-size {opts['image_size']} does not match.")
    return encoder, meta, data, data_dir, device, size


def _bars(opts: dict):
    """Progress bars for this evaluation, unless --quiet or --json."""
    from nacvae.progress import progress_bars

    return progress_bars(not opts["quiet"] and not opts["as_json"])


def _not_recorded(note: str | None) -> None:
    """After the result: the one sentence saying that the run could not record it (exit 0)."""
    if note is not None:
        click.echo(note, err=True)


def _finish(opts: dict, event: str, meta: dict, result: dict, text: list[str]) -> None:
    from nacvae.eval.encoders import encoder_summary, record

    full = {**result, **encoder_summary(meta)}
    full = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in full.items()}
    note = record(opts["run"], event, full) if opts["run"] is not None and not opts["no_record"] else None
    if opts["as_json"]:
        click.echo(json.dumps(full))
    else:
        click.echo(_source_line(meta))
        for line in text:
            click.echo(line)
    bad = full.get("bad_images") or {}
    if bad.get("count"):
        click.echo(f"{bad['count']} unreadable image(s) were replaced by the next readable ones "
                   f"(--skip-bad-images), the first: {', '.join(bad['first'][:3])}.", err=True)
    _not_recorded(note)


def _source_line(meta: dict) -> str:
    if meta.get("objective") == "random":
        return f"Encoder: random {meta['arch']} (seed {meta['seed']}, {meta['code_dim']}-bit projection head)"
    where = f"run {meta['run']}" if meta.get("run") else meta["checkpoint"]
    if meta.get("objective") is None:
        return f"Encoder: {meta['arch']} backbone from {where}"
    step = f", step {meta['step']}" if "step" in meta else ""
    unfinished = ", unfinished run" if meta.get("complete") is False else ""
    return f"Encoder: {meta['objective']} {meta['arch']} from {where}{step}{unfinished}"


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


@click.group("eval")
def eval_group() -> None:
    """Evaluate a pretrained (or random) encoder: linear probe, Hamming retrieval, k-NN, code statistics."""


@eval_group.command("linear")
@functools.partial(_encoder_options, linear=True)
@click.option("--protocol", type=click.Choice(["fast", "paper"]), default="fast", show_default=True,
              help="fast: features computed once from un-augmented images; paper: every training batch "
                   "freshly cropped and flipped (docs/evaluation.md).")
@click.option("--epochs", type=int, default=100, show_default=True, help="Classifier training epochs.")
@click.option("--lr", type=float, default=1.0, show_default=True,
              help="Peak learning rate (SGD, Nesterov momentum 0.9, per-step cosine).")
def linear(protocol: str, epochs: int, lr: float, **opts) -> None:
    """Linear classification on the frozen backbone's features h; train and test top-1."""
    from nacvae.eval.linear_eval import evaluate_linear

    encoder, meta, data, data_dir, device, size = _prepare(opts)
    with _bars(opts):
        r = evaluate_linear(encoder, data, data_dir, protocol=protocol, epochs=epochs, batch_size=opts["batch_size"],
                            lr=lr, seed=opts["seed"], device=device, image_size=size, download=opts["download"],
                            workers=opts["workers"], skip_bad_images=opts["skip_bad_images"], amp=opts["amp"])
    if protocol == "fast":
        how = "features computed once, no augmentation"
    else:
        aug = r["augmentation"]
        flips = f"flipped with p={aug['flip_p']}" if aug["flip_p"] > 0 else "not flipped"
        how = f"training batches freshly cropped at scale {aug['crop_scale'][0]}-{aug['crop_scale'][1]}, {flips}"
    text = [
        f"Linear probe on {data}, {protocol} protocol ({how})",
        f"  {r['feature_dim']}-d features h, {r['num_classes']} classes, {r['num_train']} train / "
        f"{r['num_test']} test images, {r['epochs']} epochs, batch {r['batch_size']}, lr {r['lr']}",
        f"  train top-1 {_pct(r['train_accuracy'])}   test top-1 {_pct(r['test_accuracy'])}",
    ]
    _finish(opts, "eval_linear", meta, r, text)


@eval_group.command("retrieval")
@_encoder_options
@click.option("--topk", type=int, default=None, help="R in mAP@R [the whole gallery: mAP@all].")
@click.option("--count-empty", is_flag=True,
              help="Count queries without a relevant item in the top R as AP 0 (default: leave them out).")
@click.option("--split-seed", type=int, default=0, show_default=True, help="Seed of the query/gallery split.")
@click.option("--queries-per-class", type=int, default=None,
              help="Queries drawn per class [cifar10 1000, fashion-mnist 100, else 10% of the smallest class].")
@click.option("--ranking", type=click.Choice(["hamming", "paper"]), default="hamming", show_default=True,
              help="hamming: Hamming distance, ties by gallery index; paper: the paper code's inner product of "
                   "{0,1} codes, ties as numpy's default sort leaves them (docs/evaluation.md).")
def retrieval(topk: int | None, count_empty: bool, split_seed: int, queries_per_class: int | None, ranking: str,
              **opts) -> None:
    """Hamming-ranking mAP of the codes sgn(a) on the pooled query/gallery split."""
    from nacvae.checks import check_int
    from nacvae.eval.retrieval_eval import evaluate_retrieval

    check_int("topk", topk, optional=True)  # before the encoder is loaded
    check_int("split-seed", split_seed, 0)
    encoder, meta, data, data_dir, device, size = _prepare(opts)
    with _bars(opts):
        r = evaluate_retrieval(encoder, data, data_dir, topk=topk, count_empty=count_empty, seed=split_seed,
                               queries_per_class=queries_per_class, batch_size=opts["batch_size"], device=device,
                               image_size=size, download=opts["download"], ranking=ranking,
                               workers=opts["workers"], skip_bad_images=opts["skip_bad_images"], amp=opts["amp"])
    empty = "counted as 0" if count_empty else "left out"
    drawn = (f"{r['queries_per_class']} per class" if r["queries_per_class"] is not None
             else "drawn from all images; relevant = shares a label")
    if ranking == "hamming":
        how = "Hamming retrieval", "ties by gallery index"
    else:
        how = "Retrieval ranked as the paper's code does ({0,1} inner product)", "ties as numpy's default sort leaves them"
    text = [
        f"{how[0]} on {data} ({r['split']} split, seed {r['split_seed']}): "
        f"{r['num_queries']} queries ({drawn}), gallery {r['gallery_size']}",
        f"  {r['bits']}-bit codes sgn(a); {how[1]}; queries without a relevant item {empty}",
        f"  {r['metric']}: {r['map']:.4f}",
    ]
    _finish(opts, "eval_retrieval", meta, r, text)


@eval_group.command("knn")
@_encoder_options
@click.option("--k", "k", type=int, default=200, show_default=True, help="Neighbours that vote.")
@click.option("--temperature", type=float, default=0.07, show_default=True,
              help="tau: each neighbour votes with weight exp(cosine similarity / tau).")
def knn(k: int, temperature: float, **opts) -> None:
    """Weighted k-NN top-1 and top-5 on the frozen backbone's features h (train split as memory)."""
    from nacvae.eval.knn import check_knn_options
    from nacvae.eval.knn_eval import evaluate_knn

    check_knn_options(k, temperature)  # before the encoder is loaded
    encoder, meta, data, data_dir, device, size = _prepare(opts)
    with _bars(opts):
        r = evaluate_knn(encoder, data, data_dir, k=k, temperature=temperature, batch_size=opts["batch_size"],
                         device=device, image_size=size, download=opts["download"], workers=opts["workers"],
                         skip_bad_images=opts["skip_bad_images"], amp=opts["amp"])
    text = [
        f"Weighted k-NN on {data}: k = {r['k']}, weights exp(s / {r['temperature']}), s = cosine similarity",
        f"  {r['feature_dim']}-d features h, {r['num_classes']} classes, {r['num_train']} train images as memory, "
        f"{r['num_test']} test queries",
        f"  top-1 {_pct(r['top1'])}   top-5 {_pct(r['top5'])}",
    ]
    _finish(opts, "eval_knn", meta, r, text)


@eval_group.command("codes")
@_encoder_options
@click.option("--split", type=click.Choice(["train", "test"]), default="test", show_default=True)
def codes(split: str, **opts) -> None:
    """Spread of the activation codes sgn(a) over a split: the paper's expressivity proxy."""
    from nacvae.eval.codes_eval import evaluate_codes

    encoder, meta, data, data_dir, device, size = _prepare(opts)
    with _bars(opts):
        r = evaluate_codes(encoder, data, data_dir, split=split, batch_size=opts["batch_size"], device=device,
                           image_size=size, download=opts["download"], workers=opts["workers"],
                           skip_bad_images=opts["skip_bad_images"], amp=opts["amp"])
    hamming = r["mean_pairwise_hamming"]
    hamming_text = "undefined (one image)" if not math.isfinite(hamming) else (
        f"{hamming:.2f} of {r['code_length']} bits ({_pct(r['mean_pairwise_hamming_fraction'])})")
    text = [
        f"Activation codes sgn(a) on {data} {split} ({r['num_codes']} images, {r['code_length']} bits)",
        f"  distinct codewords {r['distinct_codes']} ({_pct(r['distinct_fraction'])})",
        f"  mean pairwise Hamming distance {hamming_text}",
        f"  bit balance {r['bit_balance']:.3f} (mean |p - 0.5| {r['mean_abs_bit_bias']:.3f})",
    ]
    _finish(opts, "eval_codes", meta, r, text)


@eval_group.command("gap")
@click.option("--run", type=click.Path(), required=True, help="A VAE run folder (or a VAE checkpoint).")
@click.option("--num-images", type=int, default=None, help="The first N test images [500, or all if fewer].")
@click.option("--samples", type=int, default=1000, show_default=True,
              help="Importance samples K per image for log p(x) (proposal: the fitted q*).")
@click.option("--elbo-samples", type=int, default=100, show_default=True,
              help="Samples per image that estimate each ELBO.")
@click.option("--fit-samples", type=int, default=4, show_default=True, help="Samples per image per Adam step of q*.")
@click.option("--lr", type=float, default=0.05, show_default=True, help="Adam learning rate of q*'s mean and log-scale.")
@click.option("--max-steps", type=int, default=2000, show_default=True, help="At most this many Adam steps per batch.")
@click.option("--check-every", type=int, default=50, show_default=True,
              help="Steps per window over which the fit's ELBO is averaged.")
@click.option("--patience", type=int, default=6, show_default=True,
              help="Stop at the N-th window that does not improve on the best by --tol (each halves the lr).")
@click.option("--tol", type=float, default=0.01, show_default=True, help="Improvement in nats per image that counts.")
@click.option("--batch-size", type=int, default=100, show_default=True, help="Images fitted at once.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Where datasets live [the run's].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every sample drawn.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@click.option("--quiet", is_flag=True, help="No progress bar (it is drawn only on a terminal, never with --json).")
@_no_record
def gap(run, num_images, samples, elbo_samples, fit_samples, lr, max_steps, check_every, patience, tol, batch_size,
        data_dir, seed, device, as_json, quiet, no_record) -> None:
    """The inference gap of a VAE on test images: log p(x) - ELBO(q*) (approximation) and
    ELBO(q*) - ELBO(q) (amortisation), q* a Gaussian fitted to each image by Adam."""
    from nacvae.eval.gap import GAP_KEYS, GapBudget, evaluate_gap_run
    from nacvae.progress import progress_bars

    budget = GapBudget(samples=samples, elbo_samples=elbo_samples, fit_samples=fit_samples, lr=lr,
                       max_steps=max_steps, check_every=check_every, patience=patience, tol=tol)
    with progress_bars(not quiet and not as_json):
        r = evaluate_gap_run(run, budget, num_images=num_images, batch_size=batch_size, seed=seed, device=device,
                             data_dir=data_dir, record=not no_record)
    r = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()}
    if as_json:
        click.echo(json.dumps({k: r[k] for k in GAP_KEYS}))
        _not_recorded(r.get("not_recorded"))
        return
    click.echo(f"VAE: {r['run'] or r['checkpoint']}, step {r['step']}, encoder init {r['init']}"
               + (" (frozen)" if r["freeze_encoder"] else ""))
    click.echo(f"Test images: {r['num_images']}; log p(x) with K = {r['samples']} importance samples from q*; "
               f"q* fitted in at most {r['fit_steps_max']} Adam steps")
    for label, key in (("log p(x)", "loglik_nats"), ("ELBO(q*)", "elbo_optimal"), ("ELBO(q)", "elbo_amortised"),
                       ("approximation gap", "approximation_gap"), ("amortisation gap", "amortisation_gap")):
        value = "n/a" if r[key] is None else f"{r[key]:.2f}"
        click.echo(f"  {label:<18} {value} nats/image")
    _not_recorded(r.get("not_recorded"))
