"""The feedback loop a captcha user lives in, measured: serve the shipped model with `--collect`, read captchas
of a look it has never seen (wheezy-captcha's default look), confirm with POST /feedback only the readings the
site would accept (the right ones; a wrong one teaches nothing, its text stays unknown), fine-tune on the
collected folder as it is, serve the new model, and repeat; after each round, the accuracy on held-out images
of that look, read by `lstm_ocr_infer.py`.

    .venv/bin/python bench/feedback_loop.py [--prefix alnum] [--rounds 3] [--per_round 300]
        [--chars 0123456789abcdefghijklmnopqrstuvwxyz --min_len 4 --max_len 5] [--test_count 500] [--out DIR]

Each round fine-tunes the served model (`--finetune PREFIX:EPOCH`, the shipped one in round 1) on everything
collected so far, with the folder's own defaults, as the README's loop does, and serves the result.
Needs wheezy.captcha (requirements-bench.txt).
"""

import argparse
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile

from heldout import WHEEZY_FONT, write_wheezy  # its `readers` puts the repository root on sys.path

from readers import ROOT, run

ALNUM = "0123456789abcdefghijklmnopqrstuvwxyz"
TIMEOUT = 60


def accuracy(model: str, folder: str) -> float:
    """The accuracy of `model` (PREFIX or PREFIX:EPOCH) on a labelled folder."""
    out = run("lstm_ocr_infer.py", *model_options(model), folder)
    return float(re.match(r"accuracy=([\d.]+)", out.splitlines()[-1]).group(1))


def model_options(model: str) -> list[str]:
    """--prefix P [--epoch N] of PREFIX or PREFIX:EPOCH."""
    prefix, colon, epoch = model.rpartition(":")
    return ["--prefix", prefix, "--epoch", epoch] if colon and epoch.isdigit() else ["--prefix", model]


def serve_and_confirm(model: str, folder: str, collected: str) -> tuple[int, int]:
    """Serve `model` with --collect; read every image of `folder`, confirm the right readings. (read, confirmed)."""
    server = subprocess.Popen([sys.executable, "lstm_ocr_serve.py", *model_options(model), "--port", "0", "--collect",
                               collected], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        port = int(line.split("http://127.0.0.1:")[1].split()[0])
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
        read = confirmed = 0
        for name in sorted(os.listdir(folder)):
            label = os.path.splitext(name)[0].rsplit("_", 1)[1]
            with open(os.path.join(folder, name), "rb") as file:
                connection.request("POST", "/read", body=file.read())
            reading = json.loads(connection.getresponse().read())["readings"][0]
            read += 1
            if reading.get("text") == label:  # the site accepts it: confirm
                connection.request("POST", "/feedback", body=json.dumps({"id": reading["id"], "correct": True}),
                                   headers={"Content-Type": "application/json"})
                answer = connection.getresponse()
                answer.read()
                confirmed += answer.status == 200
        connection.close()
        return read, confirmed
    finally:
        server.terminate()
        server.communicate(timeout=TIMEOUT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prefix", default="alnum")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--per_round", type=int, default=300)
    parser.add_argument("--chars", default=ALNUM)
    parser.add_argument("--min_len", type=int, default=4)
    parser.add_argument("--max_len", type=int, default=5)
    parser.add_argument("--test_count", type=int, default=500)
    parser.add_argument("--out", help="keep the images, the collected folder and the models here")
    args = parser.parse_args()
    print(f"# bench/feedback_loop.py {' '.join(sys.argv[1:])}", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        out = args.out or scratch
        os.makedirs(out, exist_ok=True)
        draw = lambda folder, count, seed: write_wheezy(folder, count, seed, args.min_len, args.max_len,  # noqa: E731
                                                         WHEEZY_FONT, args.chars)
        test, collected = os.path.join(out, "test"), os.path.join(out, "collected")
        draw(test, args.test_count, 2001)
        os.makedirs(collected)
        model = args.prefix
        print(f"round 0: {args.prefix} as shipped reads {accuracy(model, test):.3f} of {args.test_count} held out",
              flush=True)
        for round_number in range(1, args.rounds + 1):
            batch = os.path.join(out, f"round{round_number}")
            draw(batch, args.per_round, 3000 + round_number)
            read, confirmed = serve_and_confirm(model, batch, collected)
            total = len([name for name in os.listdir(collected) if not name.startswith(".")])
            prefix = os.path.join(out, f"model{round_number}", "ocr")  # continues from the served model
            trained = run("lstm_ocr_train.py", "--train_dir", collected, "--finetune", model, "--prefix", prefix)
            epoch = int(re.search(r"--epoch (\d+)", trained.splitlines()[-1]).group(1))  # the epoch it reads with
            model = f"{prefix}:{epoch}"
            print(f"round {round_number}: served {read}, {confirmed} confirmed, {total} collected in all; "
                  f"fine-tuned ({epoch} epochs) reads {accuracy(model, test):.3f} of the held-out", flush=True)


if __name__ == "__main__":
    main()
