"""Render the result tables of the README and the docs from ``benchmarks/results/*.json`` (never typed by hand).

    python benchmarks/readme_tables.py --write     # refresh every table between its markers
    python benchmarks/readme_tables.py --check     # exit 1 if a table differs from its JSON

A table lives in README.md or a page under docs/ between ``<!-- table:NAME -->`` and
``<!-- /table:NAME -->``; NAME picks the renderer below and the JSON file it reads.
``tests/test_readme_tables.py`` runs the check, so a number that differs from its results file
fails the suite.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"


def pages() -> list[Path]:
    """The files that hold tables: the README and every Markdown page of the docs."""
    return [README, *sorted((ROOT / "docs").rglob("*.md"))]


def all_text() -> str:
    return "\n".join(page.read_text() for page in pages())


def _load(name: str) -> dict | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.is_file() else None


def _cell(c) -> str:
    if c is None:
        return "-"
    if isinstance(c, (int, float)):
        return f"{100 * c:.2f}"
    return f"{100 * c['mean']:.2f} ± {100 * c['std']:.2f}" if len(c["runs"]) > 1 else f"{100 * c['mean']:.2f}"


def _machine(m: dict) -> str:
    return f"{m.get('cpu', '?')}, {m.get('cpus_usable', '?')} cores, torch {m.get('torch', '?')}"


def accuracy(file: str) -> str:
    res = _load(file)
    if res is None:
        return f"(no {file} yet: run benchmarks/accuracy.py)"
    steps = [str(t) for t in res["steps"]]
    rows = res["rows"]
    res = {**res, "seeds": max([r.get("seeds", 1) for r in rows.values()] + [1])}  # rows may have fewer
    order = ["tuned_logistic", "logistic C=1", "MLP (1 hidden layer, early stopping)", "nearest class mean"]
    names = [n for n in order if n in rows] + [n for n in rows if n not in order]
    label = {"tuned_logistic": "logistic regression, C by CV on train (**tuned probe**, backprop)",
             "logistic C=1": "logistic regression, C = 1 (backprop)",
             "MLP (1 hidden layer, early stopping)": "MLP, 1 hidden layer, early stopping (backprop)"}
    features = f"{res['encoder']} features"
    if res.get("precision") == "int8":
        c = res["calibration"]
        features = (f"{res['encoder']} **int8** features (NNCF {c['nncf']}, preset {c['preset']}, calibrated on "
                    f"{c['images']} {c['dataset']}/train images, seed {c['seed']})")
    out = [f"{res['n_classes']} classes, {res['n_train']:,} train / {res['n_val']:,} val, {features}, "
           f"{res['seeds']} seed(s); {_machine(res['machine'])}", "",
           "| method | " + " | ".join(f"T={t}" for t in steps) + " | top-5 |",
           "|" + " --- |" * (len(steps) + 2)]
    for n in names:
        r = rows[n]
        if isinstance(r["top1"], dict) and "mean" not in r["top1"]:
            top1 = [_cell(r["top1"].get(t)) for t in steps]
            top5 = _cell(r["top5"].get("32", r["top5"][steps[-1]]))
        else:
            top1 = [_cell(r["top1"])] + [""] * (len(steps) - 1)
            top5 = _cell(r["top5"])
        seeds = f" ({r['seeds']} seed)" if r.get("seeds") and r["seeds"] != res["seeds"] else ""
        out.append(f"| {label.get(n, n)}{seeds} | " + " | ".join(top1) + f" | {top5} |")
    return "\n".join(out)


def rule_study(_: str = "") -> str:
    res = _load("rule_study.json")
    if res is None:
        return "(no rule_study.json yet: run benchmarks/rule_study.py)"
    data = res["data"]
    names = list(data)
    out = ["| variant (held-out 20 % of train, continuous mode) | " + " | ".join(names) + " | kept |",
           "|" + " --- |" * (len(names) + 2),
           "| linear probe, best C on the held-out part (optimistic) | "
           + " | ".join(f"{100 * data[n]['probe_best']:.2f}" for n in names) + " | |"]
    for i, v in enumerate(data[names[0]]["variants"]):
        cells = [f"{100 * data[n]['variants'][i]['top1']:.2f}" for n in names]
        out.append(f"| {v['variant']} | " + " | ".join(cells) + f" | {'yes' if v['kept'] else 'no'} |")
    return "\n".join(out)


def resolution(_: str = "") -> str:
    res = _load("resolution.json")
    if res is None:
        return "(no resolution.json yet: run benchmarks/resolution.py)"
    out = []
    if "imagenet_sample" in res:
        out += ["| encoder | ImageNet-sample top-1, full resolution | same images shrunk to 84 px first |",
                "| --- | --- | --- |"]
        out += [f"| {n} | {100 * r['top1_full_resolution']:.1f} | {100 * r['top1_from_84px']:.1f} |"
                for n, r in res["imagenet_sample"].items()]
        out.append("")
    if "imagenet64_probe" in res:
        out += ["| encoder | input px | MMACs / image | imagenet64 linear probe top-1 | top-5 |", "| --- | --- | --- | --- | --- |"]
        out += [f"| {r['encoder']} | {r['input_px']} | {r['macs_per_image'] / 1e6:.0f} | {100 * r['top1']:.2f} | {100 * r['top5']:.2f} |"
                for r in res["imagenet64_probe"]]
    return "\n".join(out)


def demo(_: str = "") -> str:
    res = _load("demo.json")
    if res is None:
        return "(no demo.json yet: run benchmarks/demo_time.py)"
    before = res.get("cpu_busy_before_start")  # other processes' CPU use before the start
    load = res.get("load_average_1min_after") if before is None else None  # older files: the load average
    busy = (f" (CPUs {100 * before:.0f} % busy before it started: other jobs shared the cores)" if before is not None
            and before > 0.2 else f" (machine load {load:.1f} during the run: other jobs shared the cores)"
            if load and load > 1.5 else "")
    if busy:  # a timing taken while other jobs ran is not a number to publish
        return (f"Last `python benchmarks/demo_time.py` run{busy}: its time is not quoted; on its screen CoLaNET "
                f"{100 * res['top1_spiking']:.2f} % vs the tuned probe {100 * res['tuned_probe_top1']:.2f} % "
                f"on the digits' val split.")
    return (f"Measured by `python benchmarks/demo_time.py`: {res['wall_seconds']:.0f} s with a cold cache on "
            f"{_machine(res['machine'])}; CoLaNET {100 * res['top1_spiking']:.2f} % vs the tuned probe "
            f"{100 * res['tuned_probe_top1']:.2f} % on the digits' val split.")


def encoders(_: str = "") -> str:
    res = _load("encoders.json")
    if res is None:
        return "(no encoders.json yet: run benchmarks/encoders.py)"
    out = ["| encoder | input | MACs / image | top-1 | top-5 |", "|---|---|---|---|---|"]
    for name, r in res["encoders"].items():
        out.append(f"| `{name}` | {r['resolution'][0]} px | {r['macs_per_image_features'] / 1e6:.0f} M | "
                   f"{100 * r['top1']:.1f} % | {100 * r['top5']:.1f} % |")
    return "\n".join(out)


def deploy(_: str = "") -> str:
    res = _load("deploy.json")
    if res is None or "machine" not in res:
        return "(no current deploy.json: run python benchmarks/deploy.py)"
    peers = res["peers"]
    q = res["int8_subtract"]
    return (f"Measured by `python benchmarks/deploy.py` (Imagenette val, {res['neurons']} neurons, T = {res['steps']}): "
            f"import identical to the exported model: {res['nir']['identical_predictions']}; snnTorch's and Norse's NIR "
            f"imports agree with our decisions on {100 * peers['snntorch']['agreement']:.2f} % / "
            f"{100 * peers['norse']['agreement']:.2f} % of examples; int8 model {100 * q['top1']:.2f} % vs "
            f"{100 * res['float_top1']:.2f} % float, {q['network_bytes'] / 1000:.0f} kB on chip.")


def _md(text: str) -> str:
    return str(text).replace("|", "\\|")


def nir_consumers(_: str = "") -> str:
    res = _load("deploy.json")
    if res is None or "nir_consumers" not in res:
        return "(no nir_consumers in deploy.json yet: run python benchmarks/nir_consumers.py)"
    nc = res["nir_consumers"]
    out = [f"Imagenette val ({nc['n_val']:,} examples{', --quick sample' if nc['quick'] else ''}), {nc['neurons']} "
           f"neurons, T = {nc['steps']}; agreement: the same decision as ours (`CoLaNET.simulate`), by the same "
           f"readout on the consumer's output spikes. snnTorch/Norse rows: `benchmarks/deploy.py` "
           f"({res.get('n_val', 0):,} val, its own trained model); the others: `benchmarks/nir_consumers.py`.", "",
           "| consumer | version | graph | agreement % | notes |", "| --- | --- | --- | --- | --- |"]
    versions = nc.get("peers_versions", {})
    for name, label in (("snntorch", "snnTorch"), ("norse", "Norse")):
        p = res.get("peers", {}).get(name)
        if p:
            out.append(f"| {label} | {versions.get(name) or '-'} | `--target {name}` | {100 * p['agreement']:.2f} | "
                       f"reset {p['peer_reset']}; spike counts equal to our simulation of that reset: "
                       f"{100 * p['reference_spike_match']:.2f} % |")
    for name, label in (("sinabs", "Sinabs"), ("rockpool", "Rockpool")):
        c = nc["consumers"].get(name, {})
        if "runs" not in c:
            out.append(f"| {label} | - | - | - | {_md(c.get('status', 'not run'))} |")
            continue
        version = f"{c['versions'][name]} (NIR {c['versions']['nir']})"
        for r in c["runs"]:
            if r["status"] != "ran":
                cells = ("rejected", f"`{_md(r['error'])}`")
            else:
                ref = (f"; vs our simulation of this graph {100 * r['reference_agreement']:.2f} %, spike counts equal "
                       f"{100 * r['spike_match']:.2f} %") if "reference" in r else ""
                spikes = f"; {r['output_spikes']:.1f} output spikes/example (ours {nc['ours_output_spikes']:.1f})"
                cells = (f"{100 * r['agreement']:.2f}", _md(r["notes"]) + spikes + ref)
            out.append(f"| {label} | {version} | {_md(r['graph'])} | {cells[0]} | {cells[1]} |")
    effects = nc["graph_effects"]
    out += ["", "The graphs themselves, run by our simulator, vs our decisions: "
            + "; ".join(f"{k.replace('_', ' ')} {100 * v['agreement_with_ours']:.2f} % (top-1 {100 * v['top1']:.2f})"
                        for k, v in effects.items() if k != "recurrent") + "."]
    return "\n".join(out)


def hardware_fit(_: str = "") -> str:
    res = _load("deploy.json")
    if res is None or "hardware_fit" not in res:
        return "(no hardware_fit in deploy.json yet: run python benchmarks/nir_consumers.py)"
    hw = res["hardware_fit"]
    m = hw["model"]
    out = [f"The trained Imagenette classifier: {m['inputs']:,} input channels -> {m['neurons']} neurons, "
           f"{m['classes']} classes, 8-bit weights (`spikebridge.deploy.hardware.fit_report`).", "",
           "| chip [toolchain] | fits as exported | cores needed | why not | what would have to change |",
           "| --- | --- | --- | --- | --- |"]
    for key, f in hw["chips"].items():
        lim = hw["limits"][key]
        cores = f"{f['cores']} of {f['available']}" if f["cores"] else "-"
        out.append(f"| {lim['name']} [{lim['toolchain']}] | {'yes' if f['fits'] else 'no'} | {cores} | "
                   f"{_md('; '.join(f['reasons'])) or '-'} | {_md('; '.join(f['changes'] + f['notes'])) or '-'} |")
    return "\n".join(out)



def akida(_: str = "") -> str:
    res = (_load("deploy.json") or {}).get("akida")
    if res is None:
        return "(no akida key in deploy.json yet: run python benchmarks/akida_deploy.py)"
    import statistics

    idle = not res.get("busy", True)  # times of a run that shared the cores are not quoted
    out = [f"Measured by `python benchmarks/akida_deploy.py` (akida {res['akida_version']}, its software backend; "
           f"{_machine(res['machine'])}). CoLaNET trained with the library defaults (seed 0); Akida's weights "
           "quantised per neuron, fitted to the train split's input rates (last column: to the weights alone). "
           "Agreement = same class as our continuous readout on the same spike counts with float weights / with our "
           "own quantised weights; x 2 = two Akida neurons per CoLaNET neuron, the second for the first's "
           "quantisation error.", "",
           "| data set | input bits (T) / weight bits x slices | Akida top-1 | our spiking top-1 (T = 32) | points | "
           "agreement, float weights | agreement, our quantised weights | agreement, float weights, uncalibrated |",
           "|" + " --- |" * 8]
    for name, d in res["deploy"].items():
        for key, r in d["bits"].items():
            out.append(f"| {name} | {r['input_bits']} ({r['steps']}) / {r['weight_bits']} x {r['slices']} | "
                       f"{100 * r['top1']:.2f} | {100 * d['spiking_top1']:.2f} | {r['points_vs_spiking']:+.2f} | "
                       f"{100 * r['agreement_float']:.2f} | {100 * r['agreement_quantised']:.2f} | "
                       f"{100 * r['uncalibrated_agreement_float']:.2f} |")
    hw = {name: d["hardware"] for name, d in res["deploy"].items()}
    out += ["", "The .fbz files reload with `akida.Model(path)` with identical predictions ("
            + ", ".join(f"{n}: {d['fbz']['identical_after_reload']}" for n, d in res["deploy"].items())
            + "); mapped onto a virtual AKD1000: "
            + ", ".join(f"{n}: {h['neural_processors']} {'/'.join(h['np_types'])} NP" if h["mapped"] else f"{n}: refused"
                        for n, h in hw.items()) + ".", "",
            "| data set | CoLaNET (spiking, T = 32) | Akida edge learning (AkidaUnsupervised) | its top-5 | knobs tuned on 20 % of train "
            "| learning time, CoLaNET / Akida |", "|" + " --- |" * 6]
    for name, e in res["edge"].items():
        a, c = e["akida"], e["colanet"]
        k = a["config"]
        knobs = (f"x = [rate >= {k['level']}], {k['neurons_per_class']} neurons/class, num_weights {a['num_weights']}, "
                 f"competition {k['learning_competition']}, {k.get('passes', 1)} pass(es)")
        time = f"{c['train_seconds']:.0f} s / {a['seconds']:.1f} s" if idle else "-"
        top1 = _cell({"mean": a["top1"], "std": statistics.pstdev(a["runs"]["top1"]), "runs": a["runs"]["top1"]})
        out.append(f"| {name} | {100 * c['top1']:.2f} | {top1} ({len(a['runs']['top1'])} runs) | {100 * a['top5']:.2f} | "
                   f"{knobs} | {time} |")
    met = lambda v: "met" if v else ("n/a" if v is None else "not met")  # noqa: E731
    out += ["", "Targets: " + "; ".join(f"{k}: {met(v)}" for k, v in res["targets"].items()) + "."
            + ("" if idle else " Learning times omitted: measured while other jobs shared the cores.")]
    return "\n".join(out)

def encoder_choice(_: str = "") -> str:
    from spikebridge.energy import DEFAULT_PJ_MAC, INT8_PJ_MAC

    enc = _load("encoders.json")
    rows = [(n, n, DEFAULT_PJ_MAC, _load(f)) for n, f in (("efficientnet_lite0", "accuracy_imagenet64.json"),
                                                        ("efficientnet_lite1", "accuracy_imagenet64_efficientnet_lite1.json"),
                                                        ("efficientnet_lite2", "accuracy_imagenet64_efficientnet_lite2.json"))]
    if enc is None or any(r is None for *_, r in rows):
        return "(needs encoders.json and accuracy_imagenet64*.json)"
    int8 = _load("accuracy_imagenet64_int8.json")
    if int8 is not None and "CoLaNET (spiking)" in int8["rows"]:  # --precision int8: MACs at the int8 price
        rows.insert(1, ("efficientnet_lite0 **int8**", "efficientnet_lite0", INT8_PJ_MAC, int8))
    out = ["| encoder | pJ / MAC | encoder energy / image | tuned probe top-1 | CoLaNET top-1 (T=32) | CoLaNET points per mJ |",
           "| --- | --- | --- | --- | --- | --- |"]
    for label, name, pj, r in rows:
        mj = enc["encoders"][name]["macs_per_image_features"] * pj / 1e9
        col = r["rows"]["CoLaNET (spiking)"]["top1"]["32"]["mean"]
        out.append(f"| {label} | {pj} | {mj:.3g} mJ | {100 * r['rows']['tuned_logistic']['top1']['mean']:.2f} | "
                   f"{100 * col:.2f} | {100 * col / mj:,.1f} |")
    return "\n".join(out)


#: rows recorded under a label that no longer holds (bf16 and the timed crossover became opt-in)
RENAMED_ROWS = {"spikebridge CoLaNET.simulate, library default (auto, bf16 on this CPU)":
                "spikebridge CoLaNET.simulate, auto, bf16 (opt-in)"}


def _int8_cost(name: str) -> list[tuple[str, float, float]] | None:
    """(row, fp32 top-1, int8 top-1) of the tuned probe and CoLaNET (T = 32) on ``name``."""
    fp32, int8 = _load(f"accuracy_{name}.json"), _load(f"accuracy_{name}_int8.json")
    if fp32 is None or int8 is None:
        return None
    out = []
    for row, label in (("tuned_logistic", "tuned probe"), ("CoLaNET (spiking)", "CoLaNET"),
                       ("CoLaNET single pass (spiking)", "CoLaNET single pass")):
        if row in fp32["rows"] and row in int8["rows"]:
            get = lambda r: r["top1"]["mean"] if "mean" in r["top1"] else r["top1"]["32"]["mean"]  # noqa: E731
            out.append((label, get(fp32["rows"][row]), get(int8["rows"][row])))
    return out


def int8(_: str = "") -> str:
    res = _load("int8.json")
    if res is None or "top1" not in res:
        return "(no int8.json yet: run python benchmarks/int8.py)"
    t = res["top1"]
    cal = t["int8"][0]["calibration"]
    agree = min(r["agreement_with_fp32"] for r in t["int8"])
    lines = [f"Measured by `python benchmarks/int8.py` ({_machine(res['machine'])}; accuracy only). ImageNet-sample top-1 "
             f"({t['images']:,} images, Lite0 with its ImageNet-1k head, library pipeline): fp32 "
             f"{100 * t['fp32_openvino']['top1']:.1f} %, int8 " + " / ".join(f"{100 * r['top1']:.1f} %" for r in t["int8"])
             + f" (calibrated on {cal['images']} images of {t['calibration_dataset'].split(' ')[0]}, seeds "
             + ", ".join(str(r["seed"]) for r in t["int8"])
             + f"), {t['int8_minus_fp32_points']['mean']:+.2f} points on average; int8 and fp32 predict the same class "
             f"for >= {100 * agree:.1f} % of the images."]
    feats = res.get("features") or {}
    if feats:
        lines.append("Features of the val splits, int8 vs fp32, cosine similarity per image: " + "; ".join(
            f"{n} mean {f['cosine']['mean']:.4f} (1st percentile {f['cosine']['p01']:.4f})" for n, f in feats.items()) + ".")
    costs = [(n, c) for n in ("imagenet64", "imagenette") if (c := _int8_cost(n))]
    if costs:
        lines.append("Cost on the accuracy tables (top-1 at T = 32 for CoLaNET; fp32 -> int8 features): " + "; ".join(
            f"{n}: " + ", ".join(f"{label} {100 * a:.2f} -> {100 * b:.2f} ({100 * (b - a):+.2f})" for label, a, b in c)
            for n, c in costs) + ".")
        worst = min(100 * (b - a) for n, c in costs if n == "imagenet64" for _, a, b in c) if costs[0][0] == "imagenet64" else None
        if worst is not None:
            lines.append(f"Target (issue 23): <= 0.5 points top-1 cost on imagenet64: {'met' if worst >= -0.5 else 'not met'} "
                         f"(largest cost {-worst:.2f} points).")
    return " ".join(lines)


def int8_energy(_: str = "") -> str:
    res = (_load("int8.json") or {}).get("energy")
    if res is None:
        return "(no energy section in int8.json yet: run python benchmarks/int8.py --sections energy)"
    e, h, r = res["encoder_energy_uJ"], res["heads"], res["per_operation_ratio"]
    pj_mac, pj_ac = res["pj_per_mac"], res["pj_per_ac"]
    rep8 = res["reports"]["all int8"]
    return (f"Lite0 runs {res['encoder_macs'] / 1e6:.0f} MMACs per image: {e['fp32']:,.0f} uJ at {pj_mac['fp32']} pJ per fp32 MAC, "
            f"{e['int8']:,.1f} uJ at {pj_mac['int8']} pJ per int8 MAC ({res['encoder_fp32_over_int8']:.0f}x less; Horowitz 2014, "
            f"45 nm, arithmetic only); with int8 everywhere the encoder is still {100 * rep8['encoder_share_snn']:.2f} % of an "
            f"inference. The \"10-100x\" energy advantage commonly quoted for spiking hardware compares a spike-driven "
            f"accumulate (SynOp, {pj_ac['fp32']} pJ as a fp32 add) with a fp32 MAC ({pj_mac['fp32']} pJ): "
            f"{r['fp32_mac_over_fp32_ac']:.1f}x per operation, the rest of the factor coming from sparse spikes. Against int8 "
            f"MACs ({pj_mac['int8']} pJ) that fp32 accumulate costs {1 / r['int8_mac_over_fp32_ac']:.1f}x *more* per operation, "
            f"and at equal 8-bit precision the per-operation advantage is {r['int8_mac_over_int8_ac']:.1f}x ({pj_mac['int8']} vs "
            f"{pj_ac['int8']} pJ). On {res['dataset']} (CoLaNET, T = {res['spiking_head']['steps']}, "
            f"{h['synops_per_inference']:,.0f} SynOps per inference vs {h['ann_head_macs']:,} MACs of a logistic-regression "
            f"head): spiking head / ANN head energy {h['snn_head_over_ann_head_fp32']:.2f}x with both at fp32 prices, "
            f"{h['snn_head_fp32_acs_over_ann_head_int8_macs']:.1f}x with fp32 accumulates against int8 MACs, "
            f"{h['snn_head_over_ann_head_int8']:.2f}x with both at int8 prices.")


def speed(_: str = "") -> str:
    res = _load("speed.json")
    if res is None or "analysis" not in res:
        return "(no speed.json yet: run `python benchmarks/speed.py` alone on the machine)"
    cfg = res["config"]
    load = (cfg.get("load_average_start") or [0.0])[0]
    if cfg.get("busy"):  # a timing taken while other jobs ran is not a number to publish
        return (f"The last `python benchmarks/speed.py` run started at load average {load:.1f} on "
                f"{res['machine'].get('cpus_usable', '?')} cores (other jobs shared them): its timings are not quoted.")
    m, inf, an, trn = cfg["model"], res["inference"], res["analysis"], res["training"]
    ver = res["versions"]
    out = [f"{_machine(res['machine'])}, {cfg['threads']} thread(s), load {load:.1f} at the start"
           f"{' (--quick)' if cfg.get('quick') else ''}; snnTorch {ver.get('snntorch') or '-'}, Norse "
           f"{ver.get('norse') or '-'}, BindsNET {ver.get('bindsnet') or '-'}. CoLaNET ({m['kind']}, {m['recruited']} of "
           f"{m['neurons']} neurons recruited), {cfg['input_channels']} input channels, Imagenette val batch of "
           f"{cfg['batch']} (class-stratified), T = {cfg['steps']}, input spike density {100 * cfg['input_density']:.1f} %; "
           f"min of {cfg['repeats']} interleaved runs.", "",
           "| inference | like-for-like | ms / batch | samples/s | GSynOps/s | time / ours (g = 0, same currents) |",
           "| --- | --- | --- | --- | --- | --- |"]
    for name, r in inf["rows"].items():
        if r["group"] in ("roofline", "currents"):
            continue
        name = RENAMED_ROWS.get(name, name)
        ratio = f"{r['ratio_to_ours']:.2f}" if "ratio_to_ours" in r else "-"
        out.append(f"| {name} | {'yes' if r.get('like_for_like') else 'no'} | {1000 * r['min_s']:.1f} | "
                   f"{r['samples_per_s']:,.0f} | {r['synops_per_s'] / 1e9:.2f} | {ratio} |")
    roof, frac = an["rooflines"], an["rooflines"]["fractions"]
    out += ["", f"Rooflines in the same run: fp32 GEMM peak {roof['gemm_peak_flops'] / 1e9:.0f} GFLOP/s, "
                f"the dense currents' GEMM shape {roof['dense_shape_gemm_flops'] / 1e9:.0f} GFLOP/s, "
                f"`embedding_bag` of random rows {roof['gather_synops_per_s'] / 1e9:.2f} GSynOps/s. "
                f"Dense `simulate`: {100 * frac['dense simulate of GEMM peak']:.0f} % of GEMM peak "
                f"({100 * frac['dense simulate of same-shape GEMM']:.0f} % of the same-shape GEMM); event `simulate`: "
                f"{100 * frac['event simulate of gather roofline']:.0f} % of the gather roofline "
                f"(its currents alone {100 * frac['event currents of gather roofline']:.0f} %).", "",
            f"| training (batch {trn['batch']}, T = {trn['steps']}) | size | examples/s | x BindsNET |",
            "| --- | --- | --- | --- |"]
    for name, r in trn["rows"].items():
        if "examples_per_s" not in r:
            out.append(f"| {name} ({r['status']}) | - | - | - |")
            continue
        ratio = f"{r['ratio_vs_bindsnet']:.1f}" if "ratio_vs_bindsnet" in r else "-"
        out.append(f"| {name} | {r['inputs']} -> {r['neurons']} | {r['examples_per_s']:,.0f} | {ratio} |")
    met = lambda v: "met" if v else ("n/a" if v is None else "not met")  # noqa: E731
    out += ["", "Targets: " + "; ".join(f"{k}: {met(v)}" for k, v in res["targets"].items()) + "."]
    return "\n".join(out)


def simulation(_: str = "") -> str:
    res = _load("simulation.json")
    if res is None or res.get("quick"):
        return "(no simulation.json from a full run yet: run `python benchmarks/simulation.py --remember` alone)"
    m, p, v = res["model"], res["precision"], res["precision_val"]
    cross = ", ".join(f"{100 * c:.1f} % at {n} neurons" for n, c in res["auto_crossover"]["float32"])
    ms = lambda path, prec: f"{1000 * p['simulate_s'][path][prec]:.0f} ms"  # noqa: E731
    return (f"Measured by `python benchmarks/simulation.py` ({_machine(res['machine'])}): dense/event crossover "
            f"{cross} (fp32; `method=\"auto\"` interpolates in log(neurons) and caches it per machine). On a "
            f"CoLaNET trained on Imagenette ({m['neurons']} neurons, {m['channels']} inputs, input density "
            f"{100 * p['input_density']:.1f} %, auto picks {p['auto_path']}), one batch of {p['examples']} at T = 32: "
            f"dense {ms('dense', 'float32')} fp32 / {ms('dense', 'bfloat16')} bf16, event {ms('event', 'float32')} / "
            f"{ms('event', 'bfloat16')}; bf16 decisions agree with fp32 on {100 * v['dense']['decisions']:.2f} % of the "
            f"{v['examples']:,} val examples (spike counts {100 * v['dense']['counts']:.3f} %)"
            + "".join(f"; on {name} ({a['model']['neurons']} neurons) {100 * a['dense']['decisions']:.2f} % of "
                      f"{a['examples']:,} (top-1 {100 * a['top1_auto_path']['float32']:.2f} % fp32, "
                      f"{100 * a['top1_auto_path']['bfloat16']:.2f} % bf16)"
                      for name, a in res.get("precision_val_by_dataset", {}).items() if name != Path(m["dataset"]).name)
            + f". `SPIKEBRIDGE_SIMULATION_PRECISION=auto` (opt-in) picks "
              f"{res['machine'].get('simulation_precision_auto', res['machine'].get('simulation_precision', 'fp32'))} "
              "on this machine; the library default is fp32 on every machine.")


def extract(file: str = "extract.json") -> str:
    res = _load(file)
    if res is None or res.get("mode") == "quick":
        how = ("python benchmarks/extract.py" if file == "extract.json" else
               f"python benchmarks/extract.py --variants \"fp32 openvino,int8 openvino\" --out benchmarks/results/{file}")
        return f"(no {file} from a full run yet: run `{how}` alone on the machine)"
    roof = res["roofline"]
    out = [f"Measured by `python benchmarks/extract.py` ({_machine(res['machine'])}, {res['threads']} threads, batch "
           f"{res['batch']}): Lite0 = {roof['macs_per_image'] / 1e6:.0f} MMACs per image; fp32 GEMM "
           f"{roof['gemm']['fp32']['gflop_s']:.0f} GFLOP/s, bf16 {roof['gemm']['bf16']['gflop_s']:.0f} GFLOP/s, so the "
           f"roofline is {roof['bound_img_s']['fp32']:.0f} img/s in fp32 ({roof['bound_img_s']['bf16']:.0f} in bf16).", "",
           "| data set | variant | forward img/s | % of fp32 roofline | end to end img/s | end to end / forward |",
           "| --- | --- | --- | --- | --- | --- |"]
    default = res.get("library_default_variant", {}).get("variant")
    for name, ds in res["datasets"].items():
        for variant, f in ds["forward"].items():
            e = ds["end_to_end"].get(variant)
            label = f"**{variant} (library default)**" if variant == default else variant
            out.append(f"| {name} | {label} | {f['img_s']:.1f} | {100 * f['fraction_of_fp32_roofline']:.0f} | "
                       + (f"{e['img_s']:.1f} | {e['end_to_end_over_forward']:.2f} |" if e else "- | - |"))
    t = res["top1"]
    workers = res["library_defaults"]["workers"]
    out += ["", f"Decoding alone (library setting, {workers} worker{'' if workers == 1 else 's'}): "
            + ", ".join(f"{n} {ds['decode']['library_workers']['img_s']:.0f} img/s" for n, ds in res["datasets"].items())
            + f". ImageNet-sample top-1 ({t['images']:,} images): reference {100 * t['reference_fp32']:.1f} %, library "
            f"fp32 {100 * t['library_fp32']:.1f} %, bf16 {100 * t['library_bf16']:.1f} %"
            + (f", OpenVINO engine fp32 {100 * t['library_openvino_fp32']:.1f} %" if "library_openvino_fp32" in t else "")
            + (f", int8 {100 * t['library_int8']:.1f} %" if "library_int8" in t else "")
            + "".join(f"; {n} (ONNX file) {b['img_s']:.1f} img/s, {100 * b['top1']:.1f} %"
                      for n, b in res.get("backends", {}).items() if "img_s" in b) + "."]
    if default:
        goal = res["targets"]
        rows = [(n, ds["forward"][default], ds["end_to_end"][default]) for n, ds in res["datasets"].items()
                if default in ds["forward"] and default in ds["end_to_end"]]
        out += ["", f"Targets for the library default ({default}): " + "; ".join(
            f"{n}: end to end / forward {e['end_to_end_over_forward']:.2f} (target <= {goal['end_to_end_over_forward_max']}: "
            f"{'met' if e['end_to_end_over_forward'] <= goal['end_to_end_over_forward_max'] else 'not met'}), forward "
            f"{100 * f['fraction_of_fp32_roofline']:.0f} % of the fp32 roofline (target >= "
            f"{100 * goal['forward_fraction_of_fp32_roofline_min']:.0f} %: "
            f"{'met' if f['fraction_of_fp32_roofline'] >= goal['forward_fraction_of_fp32_roofline_min'] else 'not met'})"
            for n, f, e in rows) + "."]
    speedups = [(n, ds["int8_over_default"]) for n, ds in res["datasets"].items() if "int8_over_default" in ds]
    if speedups:
        goal = res["targets"].get("int8_end_to_end_over_default_min", 2.5)
        out += ["", f"int8 (issue 23 target: end to end >= {goal}x the library default): " + "; ".join(
            f"{n}: x{s['end_to_end']:.2f} end to end, x{s['forward']:.2f} forward ({'met' if s['end_to_end'] >= goal else 'not met'})"
            for n, s in speedups) + "."]
    return "\n".join(out)


def lava(_: str = "") -> str:
    res = _load("lava.json")
    if res is None or "machine" not in res:
        return "(no lava.json yet: run python benchmarks/lava_deploy.py)"
    runs = res["datasets"]
    first = next(iter(runs.values()))
    out = [f"Measured by `python benchmarks/lava_deploy.py` (lava-nc {first['lava']['versions']['lava-nc']}, "
           f"`{first['lava']['run_cfg']}`, Python {first['lava']['python']}; {_machine(res['machine'])}). CoLaNET "
           "trained with the library defaults (seed 0, T = 32), exported as `--format int8 --dynamics loihi`; "
           "identical = spike counts, first-spike steps and final membranes all equal to `Int8CoLaNET.simulate`.", "",
           "| data set | val examples in Lava | neurons | spike counts equal % | examples identical | decisions agree % | "
           "top-1 Lava | int8 loihi | int8 default | float (spiking) | loihi vs default decisions % |",
           "|" + " --- |" * 11]
    for name, d in runs.items():
        t = d["top1"]
        n = f"{d['n_val']:,}" + ("" if d["n_val"] == d["n_val_split"] else f" of {d['n_val_split']:,}")
        out.append(f"| {name} | {n} | {d['neurons']} | {100 * d['spike_counts_equal']:.3f} | "
                   f"{d['examples_identical']:,} | {100 * d['decision_agreement']:.3f} | {100 * t['lava']:.2f} | "
                   f"{100 * t['int8_loihi']:.2f} | {100 * t['int8_default']:.2f} | {100 * t['float_spiking']:.2f} | "
                   f"{100 * d['loihi_vs_default_agreement']:.2f} |")
    out += ["", "Why Lava's LIF cannot run the default int8 model exactly (so `--dynamics loihi` writes its arithmetic "
            "down instead):", ""] + [f"* {_md(x)}" for x in res["differences"]]
    out += ["", f"lava-dl's NIR import: {_md(res['nir_import'])}."]
    return "\n".join(out)


def truenorth(_: str = "") -> str:
    res = _load("truenorth.json")
    if res is None or "machine" not in res:
        return "(no truenorth.json yet: run python benchmarks/truenorth_mapping.py)"
    names = {"reference": "our network (sanity)", "levels": f"{res['copies']} weight levels per neuron",
             "split": "+ fan-in slices, partial sums as spikes", "split_linear_leak": "+ linear leak"}
    runs = res["datasets"]
    out = [f"Measured by `python benchmarks/truenorth_mapping.py` (simulated; {_machine(res['machine'])}): top-1 % on "
           "the full val split, in brackets the agreement % with our spiking decisions; each column adds one change "
           "of the mapping.", "",
           "| data set | val | our spiking top-1 | slices x inputs | " + " | ".join(names.values()) + " |",
           "|" + " --- |" * (4 + len(names))]
    for name, d in runs.items():
        cells = [f"{100 * d['variants'][k]['top1']:.2f} ({100 * d['variants'][k]['agreement']:.2f})" for k in names]
        out.append(f"| {name} | {d['n_val']:,} | {100 * d['spiking_top1']:.2f} | {d['slices']} x {d['inputs_per_slice']} | "
                   + " | ".join(cells) + " |")
    return "\n".join(out)


def integer_learning(_: str = "") -> str:
    res = (_load("deploy.json") or {}).get("integer_learning")
    if res is None or "machine" not in res:
        return "(no integer_learning entry in deploy.json yet: run python benchmarks/integer_learning.py)"
    label = {"8": "8-bit [-127, 127]", "altai": "AltAI [-255, 255]"}
    bits = res["bits"]
    quick = " (--quick: shortened training)" if res.get("quick") else ""
    out = [f"{len(res['seeds'])} seed(s){quick}, spiking top-1 (%) at T = {res['steps']} on the full val split, "
           f"mini-batch {res['train_batch']}, integer model run as its exported `Int8CoLaNET`; {_machine(res['machine'])}", "",
           "| data set | float training | float, then int8 quantised | "
           + " | ".join(f"integer training, {label.get(b, f'{b}-bit')}" for b in bits) + " |",
           "|" + " --- |" * (len(bits) + 3)]
    for name, d in res["datasets"].items():
        cells = [f"{100 * d['float']['top1']:.2f}", f"{100 * d['float']['int8_ptq_top1']:.2f}"]
        for b in bits:
            e = d["integer"].get(b)
            cells.append(f"{100 * e['top1']:.2f} ({e['points_vs_float']:+.2f})" if e else "-")
        out.append(f"| {name} ({d['classes']} classes) | " + " | ".join(cells) + " |")
    met = "; ".join(f"{k}: {'met' if v else 'not met'}" for k, v in res["targets"].items())
    return "\n".join(out + ["", f"In brackets: points vs float training. Targets: {met}."])


CONTINUAL_METHODS = {"colanet": "CoLaNET (float rule)", "colanet-batch16": "CoLaNET, batch 16",
                     "colanet-int8": "IntegerCoLaNET (8-bit rule)", "slda": "streaming LDA",
                     "slda-avalanche": "streaming LDA (avalanche-lib)", "ncm": "nearest class mean",
                     "sgd-softmax": "online SGD softmax (backprop)", "probe-joint": "tuned probe, joint (stores all; upper bound)",
                     "akida-edge": "Akida edge learning", "rstdp": "R-STDP", "diehl-cook": "Diehl & Cook"}


def continual(_: str = "") -> str:
    """One table per data set: the three protocols side by side, mean ± std over class orders."""
    out = []
    for name in ("imagenet64", "imagenette", "digits"):
        res = _load(f"continual_{name}.json")
        if res is None:
            out += [f"(no continual_{name}.json yet: run python benchmarks/continual.py --dataset ...)", ""]
            continue
        p = res["protocols"]
        off = res.get("offline", {}).get("top1")
        most = max(r.get("orders", 1) for rows in p.values() for r in rows.values())
        out += [f"**{name}** ({res['n_classes']} classes; {most} class/stream orders unless a row says fewer; offline "
                f"multi-epoch CoLaNET {_cell(off)}; {_machine(res['machine'])})", "",
                "| method | streaming | class-inc. final | avg. incremental | forgetting | state (MB) | few-shot base | novel | harmonic | last session |",
                "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        methods = [m for m in CONTINUAL_METHODS if any(m in p.get(k, {}) for k in p)]
        for m in methods:
            st, ci, fs = (p.get(k, {}).get(m) for k in ("streaming", "class-incremental", "few-shot"))
            mb = (ci or st or fs or {}).get("state_bytes")
            cells = [_cell(st["top1"]) if st else "-"]
            cells += [_cell(ci[k]) if ci else "-" for k in ("final_top1", "average_incremental", "forgetting")]
            cells.append(f"{mb['mean'] / 1e6:.2f}" if mb else "-")
            cells += [_cell(fs[k]) if fs else "-" for k in ("base", "novel", "harmonic", "last_session")]
            fewer = sorted({r["orders"] for r in (st, ci, fs) if r and r.get("orders", most) < most})
            note = f" ({', '.join(map(str, fewer))} order{'s' if fewer != [1] else ''})" if fewer else ""
            out.append(f"| {CONTINUAL_METHODS[m]}{note} | " + " | ".join(cells) + " |")
        out.append("")
    res = _load("continual_imagenet64.json")
    if res and "step_cost" in res:
        c = res["step_cost"]
        out.append(f"One CoLaNET learning step on imagenet64 (batch 1, {c['recruited_neurons']} neurons): "
                   f"{c['synops_per_step']:,.0f} SynOps, {c['weight_updates_per_step']:,.0f} weight updates, "
                   f"{c['bytes_touched_per_step'] / 1e3:,.0f} kB touched, {c['energy_uJ_per_step']:.3f} µJ "
                   f"(arithmetic, 45 nm) and {c['cpu_ms_per_step']:.2f} ms of CPU time on this machine (single-threaded; wall "
                   f"{c['wall_ms_per_step']:.2f} ms{', measured beside other jobs' if c.get('machine_busy') else ''}); anchors: Loihi 2 continual-learning "
                   f"prototype 0.05 mJ and 0.33 ms per step, an MCU few-shot learner 12 mJ per new class.")
    check = _load("slda_crosscheck.json")
    if check:
        parts = []
        for key, r in check["results"].items():
            last = r["after_each_experience"][-1]
            parts.append(f"{key.replace('_', '-')} {100 * last['top1_ours']:.2f} / {100 * last['top1_avalanche']:.2f} "
                         f"(agreement {100 * last['agreement']:.1f} %)")
        out.append(f"Our streaming LDA against avalanche-lib {check['versions']['avalanche-lib']}'s `StreamingLDA` on "
                   f"the same streams (`python benchmarks/slda_crosscheck.py`), top-1 ours / avalanche: "
                   + "; ".join(parts) + ".")
    return "\n".join(out).rstrip()


def continual_study(_: str = "") -> str:
    """The variants of the online rule (kept or not) on a split of train, per data set."""
    out = []
    for name in ("imagenet64", "digits"):
        res = _load(f"continual_study_{name}.json")
        if res is None:
            continue
        out += [f"**{name}** ({res['orders']} order{'s' if res['orders'] > 1 else ''}; {_machine(res['machine'])})", "",
                "| variant | kept | streaming | class-inc. final | forgetting | few-shot base | novel | harmonic |",
                "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        rows = [(f"reference: {k}", "", v) for k, v in res["references"].items()]
        rows += [(f"{v['name']}: {v['description']}", "yes" if v["kept"] else "no", v["protocols"]) for v in res["variants"]]
        for label, kept, p in rows:
            st, ci, fs = (p.get(k) for k in ("streaming", "class-incremental", "few-shot"))
            cells = [f"{100 * st['top1']:.2f}" if st else "-"]
            cells += [f"{100 * ci[k]:.2f}" if ci else "-" for k in ("final_top1", "forgetting")]
            cells += [f"{100 * fs[k]:.2f}" if fs else "-" for k in ("base", "novel", "harmonic")]
            out.append(f"| {label} | {kept} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out).rstrip() or "(no continual_study_*.json yet: run python benchmarks/continual_study.py)"


def akida_encoder(_: str = "") -> str:
    res = _load("akida_encoder.json")
    if res is None:
        return "(no akida_encoder.json yet: run python benchmarks/akida_encoder.py)"
    enc, c, h = res["encoder"], res["colanet_spiking_T32"], res["akida_head_4bit"]
    maps = ", ".join(f"{k}: {v['neural_processors']} NPs in {v['passes']} passes" if v["mapped"] else f"{k}: does not fit"
                     for k, v in enc["mappings"].items())
    v = res["val_sample"]
    return "\n".join([
        f"Measured by `python benchmarks/akida_encoder.py` (akida {enc['versions']['akida']}, quantizeml "
        f"{enc['versions']['quantizeml']}, its software backend; {_machine(res['machine'])}). "
        f"{enc['encoder']} converted to {enc['layers']} Akida 2.0 layers (8-bit weights and activations, uint8 input), "
        f"calibrated on {enc['calibration']['images']} {enc['calibration']['dataset']} train images; mapped onto virtual "
        f"Akida 2.0 devices: {maps}. Scored on {v['images']} of the {v['of']} val images ({v['sampling']}); CoLaNET "
        f"trained on the fp32 pipeline's train features. {res['note'][0].upper() + res['note'][1:]}.", "",
        "| encoder | head | top-1 | agreement with the fp32 pipeline |", "| --- | --- | --- | --- |",
        f"| fp32 (PyTorch) | CoLaNET, spiking T = 32 | {100 * c['fp32_encoder']:.2f} | - |",
        f"| Akida 2.0, 8-bit | CoLaNET, spiking T = 32 | {100 * c['akida_encoder']:.2f} | {100 * c['agreement']:.2f} |",
        f"| Akida 2.0, 8-bit | Akida, 4-bit (ON/OFF coder on the host) | {100 * h['akida_encoder']:.2f} | "
        f"{100 * h['agreement_with_fp32_pipeline']:.2f} |",
        "", f"Features of the Akida encoder vs fp32: cosine similarity {res['feature_cosine']['mean']:.3f} on average "
        f"(lowest {res['feature_cosine']['min']:.3f})."])


def fast_lane(_: str = "") -> str:
    res = _load("fast_lane.json")
    if res is None:
        return "(no fast_lane.json yet: run python benchmarks/fast_lane.py)"
    c = res["counts"]
    if res["cpu_busy_before_start"] > 0.2:
        return f"Fast lane: {c.get('passed', 0)} tests (its last timing shared the CPUs with other jobs: not quoted)."
    return (f"Fast lane (`python benchmarks/fast_lane.py`): {c.get('passed', 0)} tests pass in "
            f"{res['wall_seconds']:.0f} s on {_machine(res['machine'])}; {c.get('deselected', 0)} slow ones run in CI.")


RENDERERS = {
    "akida_encoder": akida_encoder,
    "fast_lane": fast_lane,
    "continual": continual,
    "continual_study": continual_study,
    "speed": speed,
    "deploy": deploy,
    "integer_learning": integer_learning,
    "akida": akida,
    "lava": lava,
    "truenorth": truenorth,
    "nir_consumers": nir_consumers,
    "hardware_fit": hardware_fit,
    "encoder_choice": encoder_choice,
    "demo": demo,
    "encoders": encoders,
    "accuracy_imagenet64": lambda: accuracy("accuracy_imagenet64.json"),
    "accuracy_imagenet64_lite1": lambda: accuracy("accuracy_imagenet64_efficientnet_lite1.json"),
    "accuracy_imagenet64_lite2": lambda: accuracy("accuracy_imagenet64_efficientnet_lite2.json"),
    "accuracy_imagenette": lambda: accuracy("accuracy_imagenette.json"),
    "accuracy_imagenet64_int8": lambda: accuracy("accuracy_imagenet64_int8.json"),
    "accuracy_imagenette_int8": lambda: accuracy("accuracy_imagenette_int8.json"),
    "int8": int8,
    "int8_energy": int8_energy,
    "accuracy_digits": lambda: accuracy("accuracy_digits.json"),
    "rule_study": rule_study,
    "simulation": simulation,
    "extract": extract,
    "extract_int8": lambda: extract("extract_int8.json"),
    "resolution": resolution,
}
PATTERN = re.compile(r"(<!-- table:([\w-]+) -->\n)(.*?)\n?(<!-- /table:\2 -->)", re.S)


def refresh(text: str, where: str = "README.md") -> str:
    def sub(m):
        name = m.group(2)
        if name not in RENDERERS:
            raise SystemExit(f"{where}: unknown table {name!r}; known: {sorted(RENDERERS)}")
        return m.group(1) + RENDERERS[name]() + "\n" + m.group(4)

    return PATTERN.sub(sub, text)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args(argv)
    failed = False
    for page in pages():
        text = page.read_text()
        where = str(page.relative_to(ROOT))
        new = refresh(text, where)
        if args.write and new != text:
            page.write_text(new)
            print(f"refreshed {len(PATTERN.findall(text))} tables in {where}")
        if args.check and new != text:
            stale = [m.group(2) for m in PATTERN.finditer(text) if m.group(0) not in new]
            print(f"{where}: tables differ from benchmarks/results: {', '.join(stale)} "
                  f"(run python benchmarks/readme_tables.py --write)", file=sys.stderr)
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
