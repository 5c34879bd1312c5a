"""``lfbtool backbones``: the registered backbones and what their specs say (from the registry only)."""

from __future__ import annotations

from rich.table import Table

from lfbtool.console import stdout


def backbones_command() -> None:
    """List the backbones: channels, stride, default AVA and test clips, where their weights come from."""
    from lfbtool.models import list_backbones

    table = Table("name", "channels", "stride", "AVA clip", "test views", "weights", "description")
    for spec in list_backbones():
        test = spec.test_clip
        if spec.torchvision_model:
            weights = f"torchvision {spec.torchvision_model} (--weights) or --checkpoint"
        else:
            weights = "MMAction2 checkpoint: " + ", ".join(spec.mmaction_configs[:2]) + (
                f" (+{len(spec.mmaction_configs) - 2} more, see docs/models.md)" if len(spec.mmaction_configs) > 2 else "")
        channels = "+".join(map(str, spec.pathway_channels)) if spec.pathway_channels else str(spec.channels)
        table.add_row(
            spec.name, channels, str(spec.stride), f"{spec.extract_clip.clip_len}x{spec.extract_clip.frame_interval}",
            f"{test.num_clips} x {test.clip_len}x{test.frame_interval}, {test.short_side}->{test.crop_size}",
            weights, spec.description,
        )
    stdout.print(table)
