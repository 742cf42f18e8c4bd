"""Study files: the typed, validated specification that the study runner consumes."""

from mmlearn.study.cells import Cell
from mmlearn.study.load import check_studies, load_study
from mmlearn.study.spec import StudySpec

__all__ = ["Cell", "StudySpec", "check_studies", "load_study"]
