import fetch_fonts


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
