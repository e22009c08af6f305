"""Federated algorithms, one file each (server + client logic)."""

from polymodal.federated.algorithms.byrd_nafl import ByrdNAFL
from polymodal.federated.algorithms.copfl import COPFL, COPFLClient, cowa_weights, gradient_scores
from polymodal.federated.algorithms.fedpall import FedPall, FedPallClient
from polymodal.federated.algorithms.fedproto import FedProto, FedProtoClient
from polymodal.federated.algorithms.fedsm import (
                                                  FedAvgFull,
                                                  FedSM,
                                                  FedSMClient,
                                                  default_variants,
                                                  global_prototypes,
                                                  make_pseudo_features,
                                                  semantic_relevance,
)
from polymodal.federated.algorithms.personal import PersonalClient, SharedFedAvg
from polymodal.federated.algorithms.pfl_baselines import (
                                                  Ditto,
                                                  DittoClient,
                                                  FedAvgFT,
                                                  FedAvgFTClient,
                                                  FedRep,
                                                  FedRepClient,
)

__all__ = ["COPFL", "ByrdNAFL", "COPFLClient", "Ditto", "DittoClient", "FedAvgFT", "FedAvgFTClient", "FedAvgFull",
           "FedPall", "FedPallClient", "FedProto", "FedProtoClient", "FedRep", "FedRepClient", "FedSM", "FedSMClient",
           "PersonalClient", "SharedFedAvg", "cowa_weights", "default_variants", "global_prototypes",
           "gradient_scores", "make_pseudo_features", "semantic_relevance"]
