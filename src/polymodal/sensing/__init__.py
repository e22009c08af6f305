"""Sensing family: SensingAgents (multi-agent IMU activity recognition, arXiv 2605.04608), the Shoaib 2013/2014
loaders, the sktime BasicMotions loader (real smartwatch data, ``.ts`` reader), a
Shoaib-format synthetic generator, signal tools, fault injection and the HAR baselines (spec sensing)."""

from polymodal.sensing.agents import (
    AnalystReport,
    HARPrediction,
    RuleBasedLLM,
    SensingAgents,
    SingleAgentHAR,
    majority_vote,
    parse_label,
)
from polymodal.sensing.basicmotions import BasicMotions, basicmotions_check, load_basicmotions, load_ts
from polymodal.sensing.faults import FAULTS, corrupt
from polymodal.sensing.imu import ACTIVITIES, load_shoaib_2013, load_shoaib_2014
from polymodal.sensing.synthetic import make_shoaib_2014
from polymodal.sensing.windowing import WindowSet, make_windows

__all__ = [
    "ACTIVITIES",
    "FAULTS",
    "AnalystReport",
    "BasicMotions",
    "HARPrediction",
    "RuleBasedLLM",
    "SensingAgents",
    "SingleAgentHAR",
    "WindowSet",
    "basicmotions_check",
    "corrupt",
    "load_basicmotions",
    "load_shoaib_2013",
    "load_shoaib_2014",
    "load_ts",
    "majority_vote",
    "make_shoaib_2014",
    "make_windows",
    "parse_label",
]
