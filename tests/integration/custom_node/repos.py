"""Local git repositories of the test node packs (tests/fixtures/node_packs), served as file:// URLs.

The comfyui_custom_node tests, and bench/custom_node_noop.py, clone from these instead of GitHub.
"""
import shutil
import subprocess
from pathlib import Path

NODE_PACKS_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "node_packs"
IDENTITY = ["-c", "user.name=comfyops tests", "-c", "user.email=tests@comfyops.invalid", "-c", "commit.gpgsign=false"]


def git(cwd, *args):
    return subprocess.run(["git", *IDENTITY, *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


class PackRepo:
    """A git repository at path holding one pack; commit() adds a commit and returns its SHA."""

    def __init__(self, path, source=None):
        self.path = Path(path)
        self.path.mkdir(parents=True)
        git(self.path, "init", "-q", "-b", "main")
        self.commits = []
        if source is not None:
            shutil.copytree(NODE_PACKS_DIR / source, self.path, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__"))
            self.commit("import %s" % source)

    @property
    def url(self):
        return self.path.as_uri()

    def write(self, relpath, text):
        (self.path / relpath).write_text(text)

    def commit(self, message, files=None):
        for relpath, text in (files or {}).items():
            self.write(relpath, text)
        git(self.path, "add", "-A")
        git(self.path, "commit", "-q", "--allow-empty", "-m", message)
        self.commits.append(git(self.path, "rev-parse", "HEAD"))
        return self.commits[-1]

    def tag(self, name, annotated=False):
        git(self.path, "tag", *(["-a", "-m", name] if annotated else []), name)


def probe_pack_source(class_name, extra=""):
    """__init__.py of a minimal pack registering class_name (for second commits and name clashes)."""
    return (
        "class Probe:\n"
        "    @classmethod\n"
        "    def INPUT_TYPES(cls):\n"
        "        return {'required': {}}\n"
        "    RETURN_TYPES = ()\n"
        "    FUNCTION = 'run'\n"
        "    CATEGORY = 'ansible/probe'\n"
        "%s\n"
        "NODE_CLASS_MAPPINGS = {%r: Probe}\n" % (extra, class_name)
    )


class RecordingGit:
    """An executable `git` wrapper that logs each call's subcommand before running the real git.

    The module's no-op promise (no clone, fetch or ls-remote) is checked against this log.
    """

    def __init__(self, workdir):
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        self.log = workdir / "git_calls.log"
        self.bin = workdir / "git"
        real = shutil.which("git")
        # the subcommand is the first argument that is neither an option nor an option's value
        self.bin.write_text(
            "#!/bin/sh\n"
            "log='%s'\n"
            "for a in \"$@\"; do\n"
            "  case \"$skip$a\" in\n"
            "    1*) skip= ;;\n"
            "    -c|-C) skip=1 ;;\n"
            "    -*) ;;\n"
            "    *) echo \"$a\" >> \"$log\"; break ;;\n"
            "  esac\n"
            "done\n"
            "exec '%s' \"$@\"\n" % (self.log, real))
        self.bin.chmod(0o755)

    def commands(self):
        return self.log.read_text().split() if self.log.exists() else []

    def clear(self):
        self.log.unlink(missing_ok=True)
