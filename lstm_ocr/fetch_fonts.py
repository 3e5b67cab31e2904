"""Fill font/ with freely licensed fonts from Debian's font packages, without installing them.

    python fetch_fonts.py font/        # run by `make fonts`

Each package is fetched with `apt-get download` and unpacked with `dpkg -x` into a temporary
folder; the chosen .ttf files are copied into the target folder (names without spaces). A font
already there is not fetched again, so a second run needs no network. A package that cannot be
had (no network, no apt) is a warning, not a failure: training works with whatever fonts are there.
Every copied font must have a glyph for each digit, or it is removed with a warning. The packages
and their licences are listed in font/README.md.
"""

from lstm_ocr import venv_check  # noqa: F401  (first: one error line, not a traceback, without the .venv's packages)

# isort: split

import os
import shutil
import subprocess
import sys
import tempfile

from lstm_ocr.captcha_generator import missing_glyphs
from lstm_ocr.cli import ArgumentParser, InputError, run_main
from lstm_ocr.hyperparameters import DIGITS

# package -> the .ttf files to take from it (regular and heavy weights; the varied style adds slant)
DEBIAN_FONTS: dict[str, tuple[str, ...]] = {
    "fonts-dejavu-core": ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf",
                          "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf"),
    "fonts-liberation": ("LiberationSans-Regular.ttf", "LiberationSans-Bold.ttf", "LiberationSerif-Regular.ttf",
                         "LiberationSerif-Bold.ttf", "LiberationMono-Regular.ttf", "LiberationMono-Bold.ttf",
                         "LiberationSansNarrow-Bold.ttf"),
    "fonts-freefont-ttf": ("FreeSans.ttf", "FreeSansBold.ttf", "FreeSerif.ttf", "FreeSerifBold.ttf", "FreeMono.ttf",
                           "FreeMonoBold.ttf"),
    "fonts-open-sans": ("OpenSans-Regular.ttf", "OpenSans-ExtraBold.ttf", "OpenSans-CondBold.ttf"),
    "fonts-roboto-unhinted": ("Roboto-Regular.ttf", "Roboto-Black.ttf", "RobotoCondensed-Bold.ttf"),
    "fonts-lato": ("Lato-Regular.ttf", "Lato-Heavy.ttf"),
    "fonts-crosextra-carlito": ("Carlito-Regular.ttf", "Carlito-Bold.ttf"),
    "fonts-crosextra-caladea": ("Caladea-Bold.ttf",),
    "fonts-go": ("Go-Regular.ttf", "Go-Bold.ttf", "Go-Mono-Bold.ttf"),
    "fonts-noto-mono": ("NotoSansMono-Bold.ttf",),
    "fonts-oxygen": ("Oxygen-Sans-Bold.ttf", "OxygenMono-Regular.ttf"),
    "fonts-quicksand": ("Quicksand-Bold.ttf",),
    "fonts-mononoki": ("mononoki-Regular.ttf",),
    "fonts-jetbrains-mono": ("JetBrainsMono-ExtraBold.ttf",),
    "fonts-averia-gwf": ("AveriaGWF-Regular.ttf",),
    "fonts-anonymous-pro": ("Anonymous Pro B.ttf",),
    "fonts-sil-gentium": ("Gentium-R.ttf",),
    "fonts-breip": ("Breip.ttf",),
    "fonts-dkg-handwriting": ("dkgBd.ttf",),
}
APT_TIMEOUT = 300  # seconds for one apt-get call


def target_name(name: str) -> str:
    """The file name in font/: no spaces (`Anonymous Pro B.ttf` -> `AnonymousProB.ttf`)."""
    return name.replace(" ", "")


def warn(message: str) -> None:
    sys.stderr.write(f"warning: {message}\n")


def _run(command: list[str], cwd: str) -> bool:
    try:
        return subprocess.run(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=APT_TIMEOUT).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def download(package: str, folder: str, state: dict) -> str | None:
    """The .deb of `package` downloaded into `folder`, or None. If apt knows no such package and we
    are root (as in CI), the package lists are updated once and the download tried again."""
    if shutil.which("apt-get") is None:
        return None
    ok = _run(["apt-get", "download", "-q", package], folder)
    if not ok and not state.get("updated") and os.geteuid() == 0:
        state["updated"] = True
        if _run(["apt-get", "update", "-qq"], folder):
            ok = _run(["apt-get", "download", "-q", package], folder)
    debs = [name for name in os.listdir(folder) if name.startswith(f"{package}_") and name.endswith(".deb")]
    return os.path.join(folder, debs[0]) if ok and debs else None


def find_file(tree: str, name: str) -> str | None:
    """The path of the file called `name` anywhere below `tree`."""
    for folder, _, files in os.walk(tree):
        if name in files:
            return os.path.join(folder, name)
    return None


def fetch(target: str, packages: dict[str, tuple[str, ...]] = DEBIAN_FONTS) -> list[str]:
    """Copy every listed font not already in `target` into it; returns the names copied."""
    copied: list[str] = []
    state: dict = {}
    with tempfile.TemporaryDirectory(prefix="fonts-") as work:
        for package, names in packages.items():
            wanted = [name for name in names if not os.path.exists(os.path.join(target, target_name(name)))]
            if not wanted:
                continue
            deb = download(package, work, state)
            tree = os.path.join(work, package)
            if deb is None or not _run(["dpkg", "-x", deb, tree], work):
                warn(f"could not fetch Debian package {package} (apt-get download / dpkg -x failed); "
                     f"training goes on without {', '.join(map(target_name, wanted))}")
                continue
            for name in wanted:
                found = find_file(tree, name)
                if found is None:
                    warn(f"package {package} has no {name}")
                    continue
                path = os.path.join(target, target_name(name))
                shutil.copyfile(found, path)
                try:
                    missing = missing_glyphs(path, DIGITS)
                except InputError:
                    missing = DIGITS
                if missing:
                    os.remove(path)
                    warn(f"{name} of {package} lacks glyphs for {missing!r}; not used")
                    continue
                copied.append(target_name(name))
    return copied


def main() -> None:
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("folder", help="where the .ttf files go (font/)")
    args = parser.parse_args()
    if not os.path.isdir(args.folder):
        raise InputError(f"folder {args.folder} does not exist")
    copied = fetch(args.folder)
    total = len([name for name in os.listdir(args.folder) if name.lower().endswith(".ttf")])
    print(f"{len(copied)} fonts fetched; {args.folder} holds {total} fonts")


if __name__ == "__main__":
    run_main(main)
