"""The ABAW vocabularies: class names, AU names, sentinels, official headers and file names.

This is the one place these facts live (see ``shared/ABAW_FORMATS.md``); every other module
imports them from here. Indices are positions in these tuples: expression 0 is Neutral,
AU index 0 is AU1, LSD class 0 is Anger, and so on.
"""

from __future__ import annotations

# --- 4th ABAW MTL / per-video EXPR (5th edition on): 8 expression classes ------------------
EXPRESSIONS: tuple[str, ...] = (
    "Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise", "Other",
)
NUM_EXPRESSIONS = len(EXPRESSIONS)
#: 1st/2nd editions used 7 classes (no ``Other``).
EXPRESSIONS_7: tuple[str, ...] = EXPRESSIONS[:7]

# --- the 12 ABAW action units, in the official column order ---------------------------------
AUS: tuple[str, ...] = (
    "AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26",
)
NUM_AUS = len(AUS)

# --- LSD (4th ABAW learning from synthetic data): 6 classes, alphabetical -------------------
LSD_CLASSES: tuple[str, ...] = ("Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise")
NUM_LSD_CLASSES = len(LSD_CLASSES)
#: Folder names as the organisers ship them (``ANGRER`` is their spelling, kept on purpose).
LSD_FOLDERS: tuple[str, ...] = ("ANGRER", "DISGUST", "FEAR", "HAPPINESS", "SADNESS", "SURPRISE")
#: Every folder spelling accepted when reading, mapped to the class index.
LSD_FOLDER_TO_CLASS: dict[str, int] = {
    **{name: i for i, name in enumerate(LSD_FOLDERS)},
    "ANGER": 0,
    "ANGERE": 0,
}

# --- compound expressions (6th/7th editions, CE challenge) ----------------------------------
COMPOUND_EXPRESSIONS: tuple[str, ...] = (
    "Fearfully_Surprised", "Happily_Surprised", "Sadly_Surprised", "Disgustedly_Surprised",
    "Angrily_Surprised", "Sadly_Fearful", "Sadly_Angry",
)
NUM_COMPOUND = len(COMPOUND_EXPRESSIONS)

# --- sentinels for "not annotated" ----------------------------------------------------------
VA_MISSING = -5.0
EXPR_MISSING = -1
AU_MISSING = -1

# --- MTL (s-Aff-Wild2) files and headers ----------------------------------------------------
MTL_TRAIN_FILE = "training_set_annotations.txt"
MTL_VAL_FILE = "validation_set_annotations.txt"
MTL_TEST_LIST = "MTL_Challenge_test_set_release.txt"
#: Labelled MTL test truth the synthetic data ships (16-field annotation file; for
#: ``abaw test`` and the hidden-truth score; the real test labels are not released).
MTL_TEST_TRUTH = "test_set_annotations.txt"
MTL_IMAGE_DIR = "cropped_aligned"
#: Column names of the 16-field annotation lines (the literal header of the official files is
#: not verified, so readers skip line 1 and parse by position).
MTL_ANNOTATION_COLUMNS: tuple[str, ...] = ("image", "valence", "arousal", "expression", *AUS)
MTL_ANNOTATION_HEADER = ",".join(MTL_ANNOTATION_COLUMNS)
#: Line 1 of the test list and of the submission file (5 names over 16 data fields).
MTL_SUBMISSION_HEADER = "image,valence,arousal,expression,aus"
MTL_TEST_LIST_HEADER = MTL_SUBMISSION_HEADER

# --- LSD files and headers ------------------------------------------------------------------
LSD_TRAIN_DIR = "training_set_synthetic_images"
LSD_VAL_DIR = "validation_set_real_images"
LSD_TEST_LIST = "LSD_Challenge_test_set_release.txt"
#: Flat folder of the LSD test images under the data root (when no test folder is named).
LSD_TEST_DIR = "test_set"
#: Labelled test truth the synthetic data ships (``image,expression``; for ``abaw test`` and
#: the hidden-truth score; the real test labels are not released).
LSD_TEST_TRUTH = "test_set_labels.txt"
LSD_SUBMISSION_HEADER = "image,expression"
LSD_TEST_LIST_HEADER = LSD_SUBMISSION_HEADER

# --- per-video tasks (Aff-Wild2) ------------------------------------------------------------
PER_VIDEO_TASKS: tuple[str, ...] = ("va", "expr", "au")
#: The tasks of the MTL challenge (the same three, trained jointly on one frame).
MTL_TASKS: tuple[str, ...] = PER_VIDEO_TASKS
#: Annotation folder names per task; the first is the current name, the rest older editions'.
PER_VIDEO_FOLDERS: dict[str, tuple[str, ...]] = {
    "va": ("VA_Estimation_Challenge", "VA_Set"),
    "expr": ("EXPR_Recognition_Challenge", "EXPR_Classification_Challenge", "EXPR_Set"),
    "au": ("AU_Detection_Challenge", "AU_Set"),
}
PER_VIDEO_SPLITS: tuple[str, ...] = ("Train_Set", "Validation_Set")
PER_VIDEO_TEST_NAMES_DIR = "names_of_videos_in_each_test_set"
#: Folder of the per-task test sample files as the organisers shipped them (5th, 6th).
PER_VIDEO_SAMPLES_DIR = "test_set_examples"
#: The per-video editions whose names :mod:`abaw.synth` can write (``--edition``).
PER_VIDEO_EDITIONS: tuple[int, ...] = (5, 6)
#: Per edition and task: (annotation folder, test video-name list, sample file). The 5th
#: edition's EXPR folder is ``EXPR_Classification_Challenge``, the 6th's
#: ``EXPR_Recognition_Challenge``; the sample files are ``CVPR_<n>th_ABAW_<T>_test_set_
#: example.txt`` (6th: ``Expr``), also met renamed ``..._sample.txt`` (readers accept both).
PER_VIDEO_EDITION_FILES: dict[int, dict[str, tuple[str, str, str]]] = {
    5: {"va": ("VA_Estimation_Challenge", "Valence_Arousal_Estimation_Challenge_test_set_release.txt",
               "CVPR_5th_ABAW_VA_test_set_example.txt"),
        "expr": ("EXPR_Classification_Challenge",
                 "Expression_Classification_Challenge_test_set_release.txt",
                 "CVPR_5th_ABAW_EXPR_test_set_example.txt"),
        "au": ("AU_Detection_Challenge", "Action_Unit_Detection_Challenge_test_set_release.txt",
               "CVPR_5th_ABAW_AU_test_set_example.txt")},
    6: {"va": ("VA_Estimation_Challenge", "Valence_Arousal_Estimation_Challenge_test_set_release.txt",
               "CVPR_6th_ABAW_VA_test_set_example.txt"),
        "expr": ("EXPR_Recognition_Challenge", "Expression_Recognition_Challenge_test_set_release.txt",
                 "CVPR_6th_ABAW_Expr_test_set_example.txt"),
        "au": ("AU_Detection_Challenge", "Action_Unit_Detection_Challenge_test_set_release.txt",
               "CVPR_6th_ABAW_AU_test_set_example.txt")},
}
#: Line 1 of a per-video annotation file.
PER_VIDEO_HEADERS: dict[str, str] = {
    "va": "valence,arousal",
    "expr": ",".join(EXPRESSIONS),
    "au": ",".join(AUS),
}
PER_VIDEO_HEADERS_EXPR_7 = ",".join(EXPRESSIONS_7)
#: Line 1 of a 5th-edition-on submission / sample file, per task.
PER_VIDEO_SUBMISSION_HEADERS: dict[str, str] = {
    "va": "image_location,valence,arousal",
    "expr": "image_location," + ",".join(EXPRESSIONS),
    "au": "image_location," + ",".join(AUS),
    "ce": "image_location," + ",".join(COMPOUND_EXPRESSIONS),
}
#: Frame image name for 1-based frame number k of a video.
FRAME_NAME_FORMAT = "{:05d}.jpg"

#: What a prediction run writes (abaw.training.writer): the submission and the raw arrays.
SUBMISSION_FILE = "submission.txt"
PREDICTIONS_FILE = "predictions.npz"
