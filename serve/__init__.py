"""`robustsam serve`'s web app: a page to prompt RobustSAM, SAM and GleSAM side by side on a folder of
images (degraded on demand), the HTTP API behind it, and the embedding cache that makes a click cost
only the decoder. Needs the `serve` extra (FastAPI, uvicorn).

    bench = open_workbench("photos/", "robustsam_vit_b.pth", out="labels/")
    with BackgroundServer(create_app(bench, checkpoint="robustsam_vit_b.pth", replay={...})) as server:
        print(server.url)
"""

from .app import create_app
from .cache import Embedding, EmbeddingCache
from .images import VIEW_KINDS, ImageFolder, ImageNotFound, View
from .server import BackgroundServer, bind, is_loopback, serve_forever
from .workbench import PATHS, SaveSummary, Workbench, open_workbench

__all__ = [
    "PATHS",
    "VIEW_KINDS",
    "BackgroundServer",
    "Embedding",
    "EmbeddingCache",
    "ImageFolder",
    "ImageNotFound",
    "SaveSummary",
    "View",
    "Workbench",
    "bind",
    "create_app",
    "is_loopback",
    "open_workbench",
    "serve_forever",
]
