"""LFBFeatureModel: raw clips and person boxes in, one feature vector per box out.

normalize (per ``backbone.spec.normalization``) -> backbone -> RoIFeatureExtractor -> LFBHead.
A two-pathway backbone (``spec.pathway_channels``) returns a tuple of maps; the RoI extractor
concatenates them (slow first), so the output has ``spec.channels`` columns either way.
The model is always in eval mode (BatchNorm uses running statistics); callers wrap it in
``torch.inference_mode()``.
"""

from __future__ import annotations

from torch import Tensor, nn

from lfbtool.choices import Pool
from lfbtool.models.lfb_head import LFBHead
from lfbtool.models.normalization import Normalize
from lfbtool.models.roi import RoIFeatureExtractor
from lfbtool.runtime.precision import Precision, run_backbone

__all__ = ["LFBFeatureModel"]

class LFBFeatureModel(nn.Module):
    """``forward(clips [N,3,T,H,W] uint8 | float 0-255, rois [R,5]) -> [R, C]`` (fp16 when ``half``).

    ``rois`` rows are ``(batch_index, x1, y1, x2, y2)`` in pixels of the (resized) clip.
    """

    def __init__(
        self,
        backbone: nn.Module,
        *,
        roi_output_size: int = 8,
        roi_temporal_pool: Pool = Pool.avg,
        temporal_pool: Pool = Pool.avg,
        spatial_pool: Pool = Pool.max,
        half: bool = True,
        precision: Precision = Precision.fp32,
    ) -> None:
        super().__init__()
        spec = backbone.spec
        self.precision = Precision(precision)  # parsed at the edge; this only checks the type
        self.backbone = backbone
        self.normalize = Normalize(spec.normalization)
        self.roi = RoIFeatureExtractor(
            output_size=roi_output_size, spatial_scale=1.0 / spec.stride, temporal_pool=roi_temporal_pool
        )
        self.head = LFBHead(temporal_pool=temporal_pool, spatial_pool=spatial_pool, half=half)
        self.eval()

    def train(self, mode: bool = True) -> LFBFeatureModel:
        """Feature extraction only: stay in eval mode so BatchNorm never updates its statistics."""
        return super().train(False)

    def forward(self, clips: Tensor, rois: Tensor) -> Tensor:
        """The backbone runs at ``precision`` (autocast for bf16/fp16); RoIAlign and the head in fp32."""
        features = run_backbone(self.backbone, self.normalize(clips), self.precision)
        return self.head(self.roi(features, rois))
