"""Errors that mean "the user asked for something that cannot be done as given", and the one message each
becomes (:func:`describe_user_error`): the CLI prints it with exit code 2, the web page shows it."""

from __future__ import annotations

import sys


class UsageError(ValueError):
    """A missing or contradictory option; the message names the flag and says what to give instead."""


def require_file(path: str | None, flag: str, what: str) -> str:
    """``path`` if it names an existing file; otherwise a UsageError naming ``flag`` and what it should be."""
    from pathlib import Path

    if not path:
        raise UsageError(f"{flag} is required: give {what}")
    if not Path(path).is_file():
        hint = " (it is a folder)" if Path(path).is_dir() else ""
        raise UsageError(f"{flag} {path}: file not found{hint}; give {what}")
    return path


def require_dir(path: str | None, flag: str, what: str) -> str:
    """``path`` if it names an existing folder; otherwise a UsageError naming ``flag`` and what it should be."""
    from pathlib import Path

    if not path:
        raise UsageError(f"{flag} is required: give {what}")
    if not Path(path).is_dir():
        hint = " (it is a file)" if Path(path).is_file() else ""
        raise UsageError(f"{flag} {path}: folder not found{hint}; give {what}")
    return path


# The project's exceptions that mean "the input or the settings are wrong", as module -> class names.
# They are looked up only in modules already imported (an error of a module never imported cannot
# have been raised), so this table costs no import. Subclasses count (NoFaceError is a VideoReadError).
USER_ERRORS: dict[str, tuple[str, ...]] = {
    "dfer_pd.common.errors": ("UsageError",),
    "dfer_pd.configs": ("ConfigNotFoundError",),
    "dfer_pd.stage2.cohort": ("ManifestError",),
    "dfer_pd.stage1.contract": ("CheckpointError", "ContractError"),
    "dfer_pd.stage1.clip_assets": ("ClipCheckpointError",),
    "dfer_pd.stage1.datasets.base": ("ClipLayoutError",),
    "dfer_pd.stage2.screening_model": ("ScreeningModelError",),
    "dfer_pd.stage2.features": ("CohortFileError",),
    "dfer_pd.screening.inputs": ("DiagnoseInputError",),
    "dfer_pd.common.video": ("VideoReadError",),
    "dfer_pd.stage2.extraction": ("UnusableVideosError",),
    "dfer_pd.stage1.export": ("OnnxUnavailableError", "OnnxModelError"),
    "dfer_pd.faces.landmarks": ("LandmarkModelError",),
}
# What to do, per error class (the message itself names the file, line or flag and the problem).
HINTS: dict[str, str] = {
    "OnnxProbeError": "the float32 export (best.onnx, --runtime onnx) is right on every CPU; an int8 file only where "
                      "its probe passes",
    "OnnxModelError": "export the stage-1 checkpoint again: dfer-pd export --checkpoint <best.ckpt> [--int8 true]",
    "OnnxUnavailableError": "install the optional extra: pip install 'dfer-pd[onnx]' (or use --runtime torch)",
    "ManifestError": "fix the manifest (columns subject_id,label,expression,path[,sex,age]; label PD or HC; "
                     "paths relative to the manifest's folder) and run the command again",
    "CheckpointError": "give a stage-1 checkpoint written by `dfer-pd train-dfer` (<run>/checkpoints/best.ckpt); "
                       "a corrupt file must be copied or trained again",
    "ContractError": "score with the stage-1 checkpoint and settings the screening model was trained with "
                     "(see its screening.json), or train the screening model again",
    "ClipCheckpointError": "give a CLIP folder or hub name that holds config and weights (--model.network.clip_name_or_path)",
    "ClipLayoutError": "point --data.root at the dataset in its official layout (see the dataset's config in experiments/datasets/)",
    "ScreeningModelError": "give the screening_model folder written by `dfer-pd train-pd` (model.safetensors + screening.json)",
    "CohortFileError": "give an intensities .npz written by `dfer-pd extract` or `train-pd`",
    "DiagnoseInputError": "give --videos FOLDER with one video per expression, or --neutral/--happiness/--surprise/--anger PATH",
    "VideoReadError": "check that the file is a complete, playable video (re-export or re-record it)",
    "NoFaceError": "record the face frontally and well lit; videos that are already face crops need a screening model "
                   "whose cohort was scored without face cropping (--face.crop_faces false in train-pd)",
}
# OS errors a user causes by naming a path that is not there or not readable.
OS_USER_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


def user_error_types() -> tuple[type[BaseException], ...]:
    """The user-error classes of the modules imported so far, plus the OS path errors."""
    types: list[type[BaseException]] = list(OS_USER_ERRORS)
    for module_name, names in USER_ERRORS.items():
        module = sys.modules.get(module_name)
        if module is not None:
            types.extend(getattr(module, name) for name in names if hasattr(module, name))
    return tuple(types)


def describe_user_error(err: BaseException) -> str | None:
    """One message for a user error (problem, then what to do), or None when ``err`` is not one (a bug)."""
    if not isinstance(err, user_error_types()):
        return None
    message = str(err)
    if isinstance(err, OSError) and err.filename and err.strerror:  # "[Errno 2] ...: 'x'" -> "x: No such file ..."
        message = f"{err.filename}: {err.strerror}"
    hint = next((HINTS[c.__name__] for c in type(err).__mro__ if c.__name__ in HINTS), None)
    return f"{message}\n  what to do: {hint}" if hint else message
