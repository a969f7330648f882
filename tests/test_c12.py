"""C12 (INT8): part statuses and verdicts from synthetic metrics (the real-scale cases: tests/test_quant_scale.py)."""

from __future__ import annotations

import pytest

from catalogue_checks import assert_catalogue_in_korean
from claim_packages import assert_measuring_is_light
from quant_metrics import c12_metrics, variant
from whylab.concepts.c12_int8 import verdict as c12
from whylab.quant import claim_parts as parts
from whylab.verdict import Label


def test_c12_speed_status_reads_the_quartiles():
    assert parts.speed_status(2.0, 2.5, 3.0, 20, (2.0, 4.0), 0.1) == "in"
    assert parts.speed_status(5.0, 6.0, 7.0, 20, (2.0, 4.0), 0.1) == "above"
    assert parts.speed_status(0.9, 1.0, 1.1, 20, (2.0, 4.0), 0.1) == "below"
    assert parts.speed_status(1.0, 1.9, 2.5, 20, (2.0, 4.0), 0.1) == "unclear"
    assert parts.speed_status(None, None, None, 0, (2.0, 4.0), 0.1) == "unknown"


def test_c12_inconclusive_without_int8_variants():
    assert c12.verdict(c12_metrics(variant("f", "fp32", loss=0, size_cut=0))).label == Label.INCONCLUSIVE


def test_c12_loss_interval_that_overlaps_the_range_counts():
    assert parts.loss_status(12.0, 16.0, (20.0, 30.0), 5.0) == "in"
    assert parts.loss_status(1.0, 14.0, (20.0, 30.0), 5.0) == "below"
    assert parts.loss_status(40.0, 50.0, (20.0, 30.0), 5.0) == "above"


def test_measuring_imports_no_plotting_or_texts():
    assert_measuring_is_light("C12")


@pytest.mark.parametrize("file", ["quant", "C12"])
def test_catalogues_match_across_languages(file):
    """Every key of these files (quant.yaml: the parts C12 and C13 share) is in both languages
    with the same parameters, and no Korean text carries English prose."""
    assert_catalogue_in_korean(file)
