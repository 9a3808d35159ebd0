"""``--push-to-hub REPO``: the adapter (or merged model) to a Hugging Face Hub repository.

The repository id is checked before anything loads; the upload happens only after the results
are in the output folder, so a failed push (no network, no login) loses nothing and says how
to upload by hand.
"""

from __future__ import annotations

from pathlib import Path

from peftkit.core.errors import RecipeError


def check_repo(repo: str) -> None:
    """Refuse a repository id the Hub would refuse, before the run instead of after it."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo)
    except HFValidationError:
        raise RecipeError(
            f"--push-to-hub {repo!r}: not a Hub repository id (letters, digits, '-', '_' and "
            "'.', as NAME or OWNER/NAME, at most 96 characters). Fix: pass e.g. "
            "--push-to-hub your-name/my-adapter."
        ) from None


def push(folder: Path, repo: str) -> str:
    """Create ``repo`` if needed (private) and upload ``folder``; return the repository URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        url = api.create_repo(repo, private=True, exist_ok=True)
        api.upload_folder(repo_id=repo, folder_path=folder, commit_message="Upload with peftkit")
    except (OSError, ValueError) as error:  # no network, offline mode, no or bad token
        raise RecipeError(
            f"--push-to-hub {repo}: the upload failed ({error}); the results are in {folder}. "
            f"Fix: log in (hf auth login) and upload them: hf upload {repo} {folder}"
        ) from None
    return str(url)
