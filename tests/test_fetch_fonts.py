from lstm_ocr import fetch_fonts


def test_a_package_that_cannot_be_had_is_a_warning_not_a_failure(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(fetch_fonts.shutil, "which", lambda name: None)  # no apt-get on this machine
    copied = fetch_fonts.fetch(str(tmp_path), {"fonts-none": ("None-Regular.ttf",)})
    assert copied == [] and list(tmp_path.iterdir()) == []
    assert "warning: could not fetch Debian package fonts-none" in capsys.readouterr().err


def test_fonts_already_there_are_not_fetched_again(tmp_path, monkeypatch):
    (tmp_path / "AnonymousProB.ttf").write_bytes(b"")

    def download(*args):
        raise AssertionError("nothing to download")

    monkeypatch.setattr(fetch_fonts, "download", download)
    assert fetch_fonts.fetch(str(tmp_path), {"fonts-anonymous-pro": ("Anonymous Pro B.ttf",)}) == []


def test_every_listed_file_gets_a_name_without_spaces():
    names = [fetch_fonts.target_name(n) for files in fetch_fonts.DEBIAN_FONTS.values() for n in files]
    assert all(" " not in n and n.endswith(".ttf") for n in names) and len(set(names)) == len(names)


def test_unknown_packages_update_the_lists_once_as_root_then_download(tmp_path, monkeypatch):
    bin_dir, log = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    apt = bin_dir / "apt-get"  # a stand-in: download fails until `update` ran, as on a fresh CI image
    apt.write_text(f"""#!/bin/sh
echo "$*" >> {log}
case "$1" in
  update) touch {tmp_path}/updated ;;
  download) [ -f {tmp_path}/updated ] && touch "$3_1.0_all.deb" ;;
esac
[ "$1" = update ] || [ -f {tmp_path}/updated ]
""")
    apt.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{fetch_fonts.os.environ['PATH']}")
    monkeypatch.setattr(fetch_fonts.os, "geteuid", lambda: 0)
    work = tmp_path / "work"
    work.mkdir()
    state: dict = {}
    assert fetch_fonts.download("fonts-x", str(work), state) == str(work / "fonts-x_1.0_all.deb")
    assert fetch_fonts.download("fonts-y", str(work), state) == str(work / "fonts-y_1.0_all.deb")
    assert log.read_text().split("\n")[:-1] == ["download -q fonts-x", "update -qq", "download -q fonts-x",
                                                "download -q fonts-y"]
