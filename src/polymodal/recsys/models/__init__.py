"""Graph collaborative-filtering models (spec sections 2-4). One file each."""

from polymodal.recsys.models.base import Recommender
from polymodal.recsys.models.freedom import FREEDOM
from polymodal.recsys.models.lgmrec import LGMRec
from polymodal.recsys.models.lightgcn import BPRMF, LightGCN
from polymodal.recsys.models.mmgcn import MMGCN
from polymodal.recsys.models.nlgcl import NLGCL
from polymodal.recsys.models.sgl import SGL
from polymodal.recsys.models.simgcl import SimGCL
from polymodal.recsys.models.vbpr import VBPR
from polymodal.recsys.models.xsimgcl import XSimGCL

__all__ = ["Recommender", "BPRMF", "LightGCN", "NLGCL", "SGL", "SimGCL", "XSimGCL", "VBPR", "FREEDOM",
           "MMGCN", "LGMRec"]
