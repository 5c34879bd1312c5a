"""What lfbtool knows about each backbone without building it: the specs, as plain data (no torch).

A spec is data about a backbone — channels, stride, normalization, default clips for extraction and
for testing, its checkpoints' key layout, where its weights come from — so nothing downstream keeps a
string-keyed table of its own. The specs live here, not in the model modules, so that
``lfbtool backbones``, ``build_config`` and the CLI read them without importing torch; the model
modules (``resnet3d``, ``slowfast``, ``tv_video``) attach a builder to each with
``@register_backbone(SPEC)`` (see :mod:`lfbtool.models.registry`).
"""

from __future__ import annotations

from dataclasses import dataclass

from lfbtool.choices import AverageClips, CropMode

__all__ = [
    "AVA_STRIDES", "BUILTIN_SPECS", "BackboneSpec", "ClipDefaults", "KINETICS_STRIDES", "MMACTION_K400_TEST",
    "MMACTION_NORMALIZATION", "Normalization", "TORCHVISION_VIDEO_NORMALIZATION", "TestDefaults",
]


@dataclass(frozen=True)
class Normalization:
    """Per-channel (RGB) input normalization (applied by :class:`lfbtool.models.normalization.Normalize`).

    ``value_range`` 255: ``(x - mean) / std`` on 0-255 pixels (MMAction2).
    ``value_range`` 1: ``(x / 255 - mean) / std`` (torchvision weights).
    """

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    value_range: float

    def __post_init__(self) -> None:
        if self.value_range not in (1, 255):
            raise ValueError(f"normalization value_range must be 1 or 255, got {self.value_range}")


MMACTION_NORMALIZATION = Normalization((123.675, 116.28, 103.53), (58.395, 57.12, 57.375), 255.0)
TORCHVISION_VIDEO_NORMALIZATION = Normalization(
    (0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989), 1.0
)


@dataclass(frozen=True)
class ClipDefaults:
    """The keyframe clip a detector was trained with (``SampleAVAFrames``): ``clip_len`` x ``frame_interval``."""

    clip_len: int
    frame_interval: int


@dataclass(frozen=True)
class TestDefaults:
    """Sampling and crop settings a recognizer was evaluated with (``recognize`` defaults).

    ``crops`` and ``average_clips`` are what ``recognize`` uses when ``--crops`` / ``--average-clips``
    are not given; a spec sets them where its configs' test pipeline is followed to the letter.
    """

    clip_len: int
    frame_interval: int
    num_clips: int
    short_side: int
    crop_size: int
    crops: CropMode = CropMode.center
    average_clips: AverageClips = AverageClips.score


#: MMAction2's AVA SlowOnly-R50 4x16 keyframe clip.
AVA_4X16 = ClipDefaults(clip_len=4, frame_interval=16)
#: MMAction2 SlowOnly-R50 8x8 Kinetics-400 test settings (10 clips of 8 frames, every 8th, 256 -> 224).
MMACTION_K400_TEST = TestDefaults(clip_len=8, frame_interval=8, num_clips=10, short_side=256, crop_size=224)
#: Spatial strides of the four stages in MMAction2's AVA detectors (output stride 16, for RoIAlign)
#: and in its Kinetics recognizers (the ResNet3d default, output stride 32); the weights are the same.
AVA_STRIDES = (1, 2, 2, 1)
KINETICS_STRIDES = (1, 2, 2, 2)


@dataclass(frozen=True)
class BackboneSpec:
    """What callers need to know about a backbone without building it.

    ``stride`` is the spatial output stride (RoIAlign uses ``1 / stride``); ``temporal_stride`` is how
    many input frames map to one output step; ``min_frames`` the shortest clip it accepts.
    ``checkpoint_prefix`` is the key prefix of the trunk inside a full detector or recognizer
    checkpoint (``backbone.`` for MMAction2); ``ignored_prefixes`` are parts of a classifier
    checkpoint the trunk does not have (``fc.``). ``torchvision_model`` names the torchvision model
    whose published weights (``R3D_18_Weights.*``) the trunk takes; ``mmaction_configs`` lists the
    MMAction2 configs whose checkpoints load into it. ``pathway_channels`` is set for multi-pathway
    trunks (slow first) whose forward returns a tuple of maps; ``channels`` is then their sum.
    ``recognition_strides`` are the stage strides of the trunk's Kinetics recognizers when they differ
    from the detector's (MMAction2's recognizers keep the last stage's stride 2: output stride 32).
    ``head`` is the MMAction2 head of its Kinetics recognizers (``i3d``, ``slowfast``, ``timesformer``;
    torchvision models keep their own). ``clip_frames`` is the one clip length a trunk takes (a fixed
    position table: VideoMAE's ``num_frames``), None where any length >= ``min_frames`` works.
    ``no_bank`` says why a trunk gives no feature map for banks (None: it does).
    """

    name: str
    channels: int
    stride: int
    normalization: Normalization
    description: str
    checkpoint_prefix: str = "backbone."
    ignored_prefixes: tuple[str, ...] = ()
    temporal_stride: int = 1
    min_frames: int = 1
    extract_clip: ClipDefaults = AVA_4X16
    test_clip: TestDefaults = MMACTION_K400_TEST
    torchvision_model: str | None = None
    mmaction_configs: tuple[str, ...] = ()
    pathway_channels: tuple[int, ...] | None = None
    recognition_strides: tuple[int, ...] | None = None
    head: str = "i3d"
    clip_frames: int | None = None
    no_bank: str | None = None


# -- MMAction2's ResNet3d family (lfbtool.models.resnet3d) ----------------------------------------------
def _slowonly_spec(name: str, description: str, extract_clip: ClipDefaults, test_clip: TestDefaults,
                   configs: tuple[str, ...]) -> BackboneSpec:
    return BackboneSpec(
        name=name, channels=2048, stride=16, normalization=MMACTION_NORMALIZATION, description=description,
        checkpoint_prefix="backbone.", extract_clip=extract_clip, test_clip=test_clip, mmaction_configs=configs,
        recognition_strides=KINETICS_STRIDES,
    )


SLOWONLY_R50_SPEC = BackboneSpec(
    name="slowonly_r50",
    channels=2048,
    stride=16,
    normalization=MMACTION_NORMALIZATION,
    description="MMAction2 SlowOnly ResNet-50 (AVA LFB backbone)",
    checkpoint_prefix="backbone.",
    recognition_strides=KINETICS_STRIDES,
    mmaction_configs=(
        "slowonly_kinetics400-pretrained-r50_8xb16-4x16x1-20e_ava21-rgb",
        "slowonly_kinetics400-pretrained-r50_8xb8-8x8x1-20e_ava21-rgb",
        "slowonly_imagenet-pretrained-r50_8xb16-4x16x1-steplr-150e_kinetics400-rgb",
        "slowonly_r50_4x16x1_256e_kinetics400_rgb (0.x)",
    ),
)
#: MMAction2 1.x Kinetics-400 test pipelines: 10 clips, short side 256, ThreeCrop 256.
_K400_4X16_TEST = TestDefaults(clip_len=4, frame_interval=16, num_clips=10, short_side=256, crop_size=256)
_K400_8X8_TEST = TestDefaults(clip_len=8, frame_interval=8, num_clips=10, short_side=256, crop_size=256)

SLOWONLY_R50_NL_SPEC = _slowonly_spec(
    "slowonly_r50_nl", "MMAction2 SlowOnly ResNet-50 with embedded-Gaussian non-local blocks",
    ClipDefaults(clip_len=4, frame_interval=16), _K400_4X16_TEST,
    (
        "slowonly_kinetics400-pretrained-r50-nl_8xb16-4x16x1-20e_ava21-rgb",
        "slowonly_kinetics400-pretrained-r50-nl_8xb16-8x8x1-20e_ava21-rgb (--clip-len 8 --frame-interval 8)",
        "slowonly_r50-in1k-pre-nl-embedded-gaussian_8xb16-4x16x1-steplr-150e_kinetics400-rgb",
        "slowonly_r50-in1k-pre-nl-embedded-gaussian_8xb16-8x8x1-steplr-150e_kinetics400-rgb",
    ),
)
SLOWONLY_R101_SPEC = _slowonly_spec(
    "slowonly_r101", "MMAction2 SlowOnly ResNet-101",
    ClipDefaults(clip_len=8, frame_interval=8), _K400_8X8_TEST,
    (
        "slowonly_kinetics400-pretrained-r101_8xb16-8x8x1-20e_ava21-rgb",
        "slowonly_r101_8xb16-8x8x1-196e_kinetics400-rgb",
    ),
)


# -- SlowFast (lfbtool.models.slowfast) -----------------------------------------------------------------
#: AVA SlowFast detectors' keyframe clip (``SampleAVAFrames(clip_len=32, frame_interval=2)``), and the
#: Kinetics-400 recognizers' test pipeline (32 x 2, 10 clips, short side 256, ThreeCrop 256).
_AVA_32X2 = ClipDefaults(clip_len=32, frame_interval=2)
_K400_32X2_TEST = TestDefaults(clip_len=32, frame_interval=2, num_clips=10, short_side=256, crop_size=256)


def _slowfast_spec(name: str, rate: int, description: str, configs: tuple[str, ...]) -> BackboneSpec:
    return BackboneSpec(
        name=name, channels=2048 + 256, stride=16, normalization=MMACTION_NORMALIZATION,
        description=description, checkpoint_prefix="backbone.", temporal_stride=rate, min_frames=rate,
        extract_clip=_AVA_32X2, test_clip=_K400_32X2_TEST, mmaction_configs=configs,
        recognition_strides=KINETICS_STRIDES,
        pathway_channels=(2048, 256), head="slowfast",
    )


SLOWFAST_R50_SPEC = _slowfast_spec(
    "slowfast_r50", 8, "MMAction2 SlowFast ResNet-50 4x16 (resample/speed ratio 8, lateral kernel 5)",
    (
        "slowfast_kinetics400-pretrained-r50_8xb16-4x16x1-20e_ava21-rgb",
        "slowfast_r50_8xb8-4x16x1-256e_kinetics400-rgb",
    ),
)
SLOWFAST_R50_8X8_SPEC = _slowfast_spec(
    "slowfast_r50_8x8", 4, "MMAction2 SlowFast ResNet-50 8x8 (resample/speed ratio 4, lateral kernel 7)",
    (
        "slowfast_kinetics400-pretrained-r50_8xb8-8x8x1-20e_ava21-rgb",
        "slowfast_kinetics400-pretrained-r50_8xb6-8x8x1-cosine-10e_ava22-rgb",
        "slowfast_r50_8xb8-8x8x1-256e_kinetics400-rgb",
        "slowfast_r50_8xb8-8x8x1-steplr-256e_kinetics400-rgb",
    ),
)


# -- torchvision video classifiers (lfbtool.models.tv_video) --------------------------------------------
_CLASSIFIER_PREFIXES = ("fc.", "avgpool.", "classifier.")
#: torchvision's documented evaluation of its Kinetics-400 video weights: 16-frame clips (their
#: datasets resample to 15 fps, so interval 1), short side 128 -> crop 112, 5 clips per video.
_TV_TEST = TestDefaults(clip_len=16, frame_interval=1, num_clips=5, short_side=128, crop_size=112)


def _tv_spec(name: str, channels: int, stride: int, temporal_stride: int, description: str,
             *, test_clip: TestDefaults = _TV_TEST, min_frames: int = 1) -> BackboneSpec:
    return BackboneSpec(
        name=name,
        channels=channels,
        stride=stride,
        normalization=TORCHVISION_VIDEO_NORMALIZATION,
        description=description,
        checkpoint_prefix="",
        ignored_prefixes=_CLASSIFIER_PREFIXES,
        temporal_stride=temporal_stride,
        min_frames=min_frames,
        test_clip=test_clip,
        torchvision_model=name,
    )


R3D_18_SPEC = _tv_spec("r3d_18", 512, 16, 8, "torchvision R3D-18 trunk (3D convs everywhere)")
MC3_18_SPEC = _tv_spec("mc3_18", 512, 16, 1, "torchvision MC3-18 trunk (3D stem+layer1, 2D layers 2-4)")
R2PLUS1D_18_SPEC = _tv_spec("r2plus1d_18", 512, 16, 8, "torchvision R(2+1)D-18 trunk (factorized convs)")
S3D_SPEC = _tv_spec("s3d", 1024, 32, 8, "torchvision S3D features (needs >= 5 frames)",
                    test_clip=TestDefaults(128, 1, 1, 256, 224), min_frames=5)


# -- torchvision video transformers (lfbtool.models.tv_transformers) --------------------------------------
#: The published weights' transforms (``MViT_V2_S_Weights.KINETICS400_V1.transforms()`` etc.: resize 256,
#: crop 224, these mean/std) and their documented evaluation: MViT 5 clips of 16 frames at 7.5 fps,
#: Swin3D 12 clips of 32 frames at 15 fps (frame interval 1 on videos resampled to that rate).
_MVIT_NORMALIZATION = Normalization((0.45, 0.45, 0.45), (0.225, 0.225, 0.225), 1.0)
_SWIN3D_NORMALIZATION = Normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 1.0)
_MVIT_TEST = TestDefaults(clip_len=16, frame_interval=1, num_clips=5, short_side=256, crop_size=224)
_SWIN3D_TEST = TestDefaults(clip_len=32, frame_interval=1, num_clips=12, short_side=256, crop_size=224)
#: Bank clips spanning the same time at AVA's 30 fps: 16 frames every 4th (7.5 fps), 32 every 2nd (15 fps).
_MVIT_CLIP = ClipDefaults(clip_len=16, frame_interval=4)
_SWIN3D_CLIP = ClipDefaults(clip_len=32, frame_interval=2)


def _tv_transformer_spec(name: str, channels: int, description: str, *, swin: bool, **extra: object) -> BackboneSpec:
    return BackboneSpec(
        name=name, channels=channels, stride=32, temporal_stride=2, description=description,
        normalization=_SWIN3D_NORMALIZATION if swin else _MVIT_NORMALIZATION, checkpoint_prefix="",
        ignored_prefixes=("head.",), extract_clip=_SWIN3D_CLIP if swin else _MVIT_CLIP,
        test_clip=_SWIN3D_TEST if swin else _MVIT_TEST, torchvision_model=name, **extra,  # type: ignore[arg-type]
    )


MVIT_V1_B_SPEC = _tv_transformer_spec(
    "mvit_v1_b", 768, "torchvision MViT-v1-B: absolute position table for 16x224x224 clips only", swin=False,
    clip_frames=16,
    no_bank="its absolute position table fits 16x224x224 clips only, so it has no feature map at the frame "
            "sizes of a bank; use it with recognize, or mvit_v2_s (relative positions) for banks",
)
MVIT_V2_S_SPEC = _tv_transformer_spec(
    "mvit_v2_s", 768, "torchvision MViT-v2-S: tokens (class token dropped) reshaped to the grid; relative "
    "positions resized to any clip size", swin=False)
SWIN3D_T_SPEC = _tv_transformer_spec("swin3d_t", 768, "torchvision Video Swin-T (shifted 8x7x7 windows)", swin=True)
SWIN3D_S_SPEC = _tv_transformer_spec("swin3d_s", 768, "torchvision Video Swin-S (shifted 8x7x7 windows)", swin=True)
SWIN3D_B_SPEC = _tv_transformer_spec("swin3d_b", 1024, "torchvision Video Swin-B (shifted 8x7x7 windows)", swin=True)


# -- MMAction2's VideoMAE VisionTransformer (lfbtool.models.vit_mae) --------------------------------------
#: AVA(-Kinetics) VideoMAE detectors: ``SampleAVAFrames(clip_len=16, frame_interval=4)``, Resize(-1, 256).
_AVA_16X4 = ClipDefaults(clip_len=16, frame_interval=4)
#: VideoMAE / VideoMAE V2 Kinetics-400 test pipeline: SampleFrames 16x4x5, Resize(-1, 224), ThreeCrop 224,
#: ``TimeSformerHead(average_clips='prob')``.
_VIDEOMAE_K400_TEST = TestDefaults(clip_len=16, frame_interval=4, num_clips=5, short_side=224, crop_size=224,
                                   crops=CropMode.three, average_clips=AverageClips.prob)


def _videomae_spec(name: str, channels: int, description: str, configs: tuple[str, ...]) -> BackboneSpec:
    return BackboneSpec(
        name=name, channels=channels, stride=16, temporal_stride=2, min_frames=16, clip_frames=16,
        normalization=MMACTION_NORMALIZATION, description=description, checkpoint_prefix="backbone.",
        extract_clip=_AVA_16X4, test_clip=_VIDEOMAE_K400_TEST, mmaction_configs=configs, head="timesformer",
    )


VIT_S_VIDEOMAE_SPEC = _videomae_spec(
    "vit_s_videomae", 384, "MMAction2 VideoMAE V2 ViT-S/16 (tubelets 2x16x16, 12 blocks, 6 heads)",
    ("vit-small-p16_videomaev2-vit-g-dist-k710-pre_16x4x1_kinetics-400",),
)
VIT_B_VIDEOMAE_SPEC = _videomae_spec(
    "vit_b_videomae", 768, "MMAction2 VideoMAE ViT-B/16 (tubelets 2x16x16, 12 blocks, 12 heads)",
    (
        "vit-base-p16_videomae-k400-pre_8xb8-16x4x1-20e-adamw_ava-kinetics-rgb",
        "vit-base-p16_videomae-k400-pre_16x4x1_kinetics-400",
        "vit-base-p16_videomaev2-vit-g-dist-k710-pre_16x4x1_kinetics-400",
    ),
)
VIT_L_VIDEOMAE_SPEC = _videomae_spec(
    "vit_l_videomae", 1024, "MMAction2 VideoMAE ViT-L/16 (tubelets 2x16x16, 24 blocks, 16 heads)",
    (
        "vit-large-p16_videomae-k400-pre_8xb8-16x4x1-20e-adamw_ava-kinetics-rgb",
        "vit-large-p16_videomae-k400-pre_16x4x1_kinetics-400",
    ),
)

#: Every backbone lfbtool ships; the registry starts from these.
BUILTIN_SPECS = (
    SLOWONLY_R50_SPEC, SLOWONLY_R50_NL_SPEC, SLOWONLY_R101_SPEC, SLOWFAST_R50_SPEC, SLOWFAST_R50_8X8_SPEC,
    R3D_18_SPEC, MC3_18_SPEC, R2PLUS1D_18_SPEC, S3D_SPEC,
    MVIT_V1_B_SPEC, MVIT_V2_S_SPEC, SWIN3D_T_SPEC, SWIN3D_S_SPEC, SWIN3D_B_SPEC,
    VIT_S_VIDEOMAE_SPEC, VIT_B_VIDEOMAE_SPEC, VIT_L_VIDEOMAE_SPEC,
)
