"""SAM / RobustSAM masks as restoration priors, and the restoration networks that use them."""

from .classical import dark_channel_dehaze, richardson_lucy_deblur, wiener_deblur
from .encoding import gray_coded_map, mask_gray_value, segment_partition
from .generate import PRIOR_GENERATOR_DEFAULTS, Prior, PriorGenerator
from .map_pool import MaskAveragePool, labels_from_partition, mask_average_pool
from .metrics import psnr, ssim
from .nafnet import MapPriorNAFNet, NAFNet
from .restorer import Restorer, load_restorer, save_restorer
from .spt import PriorModulation, PriorTunedNetwork
from .unet import PriorUNet

__all__ = [
    "PRIOR_GENERATOR_DEFAULTS",
    "MapPriorNAFNet",
    "MaskAveragePool",
    "NAFNet",
    "Prior",
    "PriorGenerator",
    "PriorModulation",
    "PriorTunedNetwork",
    "PriorUNet",
    "Restorer",
    "dark_channel_dehaze",
    "gray_coded_map",
    "labels_from_partition",
    "load_restorer",
    "mask_average_pool",
    "mask_gray_value",
    "psnr",
    "richardson_lucy_deblur",
    "save_restorer",
    "segment_partition",
    "ssim",
    "wiener_deblur",
]
