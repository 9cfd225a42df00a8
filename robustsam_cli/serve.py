"""`robustsam serve FOLDER`: parses the options and starts the web app of the `serve` package."""

from __future__ import annotations

import secrets
import shlex
from pathlib import Path
from typing import Optional

import click

from core.device import resolve_device

from .defaults import checkpoint_or_default, named_checkpoint
from .options import checkpoint_option, device_option, model_type_option, precision_option, sam_checkpoint_option


def _replay_commands(folder: Path, checkpoint: str, sam_checkpoint: Optional[Path], model_type: Optional[str],
                     glesam: Optional[Path], precision: str, recursive: bool) -> dict[str, str]:
    """Per model path, the `robustsam segment` command (without --prompts and -o) that writes a save's masks again."""
    common = [str(folder)] + (["--recursive"] if recursive else []) + (["--precision", precision] if precision != "fp32" else [])
    robust = ["--checkpoint", checkpoint] + (["--sam-checkpoint", str(sam_checkpoint)] if sam_checkpoint else [])
    robust += ["--model-type", model_type] if model_type else []
    commands = {"robust": robust, "sam": robust + ["--mode", "sam"]}
    if glesam is not None:
        commands["glesam"] = ["--checkpoint", str(glesam)]
    return {path: shlex.join(["robustsam", "segment", *common, *args]) for path, args in commands.items()}


@click.command("serve")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Where Save writes prompts.json and masks/ (without it, saving is off).")
@checkpoint_option()
@sam_checkpoint_option()
@model_type_option()
@click.option("--glesam", type=click.Path(dir_okay=False, path_type=Path), help="A GleSAM checkpoint, shown beside RobustSAM and SAM.")
@device_option()
@precision_option()
@click.option("--recursive", is_flag=True, help="Also show images in sub-folders.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on; anything but loopback needs a token.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="0: any free port.")
@click.option("--token", help="Required on every API call (header 'Authorization: Bearer TOKEN'); generated when --host is not loopback.")
@click.option("--cache-mb", type=click.IntRange(min=0), default=1024, show_default=True, help="Memory for cached image embeddings.")
@click.option("--max-megapixels", type=click.FloatRange(min=0, min_open=True), default=100.0, show_default=True,
              help="Larger images are refused (HTTP 413) before they are decoded.")
def serve(folder: Path, output: Optional[Path], checkpoint: Optional[Path], sam_checkpoint: Optional[Path], model_type: Optional[str],
          glesam: Optional[Path], device: str, precision: str, recursive: bool, host: str, port: int, token: Optional[str],
          cache_mb: int, max_megapixels: float) -> None:
    """Serve a page to prompt RobustSAM, SAM and GleSAM side by side on the images in FOLDER.

    \b
      robustsam serve photos/ -o labels/ --checkpoint robustsam_vit_b.pth
      robustsam segment photos/ --prompts labels/prompts.json -o again/ --checkpoint robustsam_vit_b.pth
    """
    try:
        from serve import bind, create_app, is_loopback, open_workbench, serve_forever
        from serve.app import LOOPBACK_HOSTS
        from serve.server import address
    except ImportError as error:
        raise click.UsageError(f"robustsam serve needs the serve extra ({error.name} is missing): pip install 'robustsam[serve]'") from None
    loopback = is_loopback(host)
    if not loopback and token is None:
        token = secrets.token_urlsafe(24)
    torch_device = resolve_device(device)
    if precision == "fp16" and torch_device.type != "cuda":
        raise click.UsageError(f"fp16 needs a CUDA device, not {torch_device}; use --precision bf16 or fp32")
    try:
        sock = bind(host, port)
    except OSError as error:
        raise click.UsageError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    checkpoint_path = checkpoint_or_default(checkpoint)
    try:
        bench = open_workbench(folder, checkpoint_path, sam_checkpoint=named_checkpoint(sam_checkpoint), model_type=model_type,
                               glesam_checkpoint=glesam, device=torch_device, precision=precision, out=output,
                               cache_bytes=cache_mb << 20, recursive=recursive,
                               max_pixels=int(max_megapixels * 1e6))
    except BaseException:
        sock.close()
        raise
    name = str(checkpoint or "default")
    replay = _replay_commands(folder, name, sam_checkpoint, model_type, glesam, precision, recursive)
    app = create_app(bench, checkpoint=name, replay=replay, token=token,
                     allowed_hosts=LOOPBACK_HOSTS if loopback else None)
    url = address(sock)
    click.echo(f"robustsam serve: {len(bench.folder.keys())} images in {folder}, models {', '.join(bench.predictors)}")
    click.echo(f"open {url}/#token={token}" if token else f"open {url}/")
    if token:
        click.echo(f"API calls need the header 'Authorization: Bearer {token}'")
    click.echo("Ctrl-C stops the server")
    serve_forever(app, sock)
