"""A FAKE hailo_platform for tests (packages/testing/fake-hailort): no hardware behind it.

Put packages/testing/fake-hailort first on PYTHONPATH and the Conclave Hailo sidecar runs
unchanged against it. What it fakes and how to inject faults: pyhailort/pyhailort.py.
"""

from hailo_platform.pyhailort.pyhailort import (
    Device,
    FormatOrder,
    FormatType,
    HailoRTException,
    HailoSchedulingAlgorithm,
    VDevice,
)

# Says "fake" in the build metadata, so a version report can never pass for a real HailoRT.
__version__ = "4.23.0+fake"

__all__ = ["Device", "FormatOrder", "FormatType", "HailoRTException", "HailoSchedulingAlgorithm", "VDevice"]
