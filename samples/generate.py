"""Write the synthetic sample corpora: English NER (IOB2) and Chinese character-level NER (BMES).

    python samples/generate.py

Sentences come from templates written for this project and invented names; nothing is copied from any
real corpus. Deterministic: re-running reproduces the files byte for byte. Dev and test use some names
that training never sees, so a model must generalise from context and word shape.
"""
from __future__ import annotations

import random
from pathlib import Path

HERE = Path(__file__).resolve().parent

FIRST = "Anna Boris Carla Dmitri Elena Farid Greta Hiro Ines Jonas Katya Luis Marta Nadia Omar Priya Quentin Rosa " \
        "Sven Tariq Ulla Viktor Wen Xavier Yara Zoltan Amira Bruno Chloe Diego".split()
LAST = "Novak Okafor Lindqvist Moreau Tanaka Petrov Silva Kowalski Haddad Brennan Fischer Ortega Nakamura " \
       "Adeyemi Larsen Romano Duval Weber Costa Ivanova Mendez Sato Keller Dubois Varga Quinn Halvorsen Bauer".split()
CITIES = "Veldmark Porto-Azul Kesh Lunaria Brightwater Oskarsby Marlow Tessaly Dunmere Caldera Rivenport Ashby " \
         "Northwick Santa-Lucida Kairo Eastfield Glenmoor Vastad".split()
COUNTRIES = "Freedonia Valdoria Mirelia Ostrava Kandor Lumeria Zembla Arcadia Norland Qurac".split()
ORGS = ["Helix Systems", "Norsk Fjord Bank", "Bluewave Inc.", "Tessaly United", "Orion Motors", "Kesh Telecom",
        "Marlow Rovers", "Caldera Mining Corp.", "Lumeria Football Federation", "Greenleaf Foods",
        "Vastad Airlines", "Northwick University", "Zembla Press Agency", "Apex Dynamics Ltd."]
MISC = ["Valdorian", "Mirelian", "Kandorese", "Olympics", "World Cup", "Lumerian", "Freedonian", "Nobel Prize",
        "Zemblan", "Norlandic", "Grand Prix", "Arcadian Open"]
HELD_OUT = {"PER_FIRST": "Ilse Mateo Noor Pavel Sunita Tomas".split(),
            "PER_LAST": "Eriksen Obi Castellano Mbeki Yilmaz Sorensen".split(),
            "LOC": "Harrowgate Mirabel Stonehaven Cordova-Alta Qasira".split(),
            "ORG": ["Quantix Labs", "Solent Shipping Co.", "Stonehaven Athletic", "Ferrovia Group"],
            "MISC": ["Qasiran", "Cordovan", "Winter Games"]}

TEMPLATES = [
    "{PER} visited {LOC} on Monday .", "{PER} , a spokesman for {ORG} , said the deal was off .",
    "Shares of {ORG} rose 3 percent in {LOC} on Tuesday .", "{ORG} beat {ORG} 2-1 in {LOC} .",
    "The {MISC} minister {PER} arrived in {LOC} late on Friday .", "{PER} won the {MISC} in {LOC} .",
    "{LOC} police arrested two men , {PER} said .", "{ORG} said it would cut 400 jobs in {LOC} .",
    "\" We are very pleased , \" said {PER} of {ORG} .", "{PER} and {PER} met in {LOC} to discuss trade .",
    "The {MISC} team lost to {LOC} in the {MISC} final .", "{ORG} opened a new office in {LOC} .",
    "In {LOC} , {ORG} reported a profit of 12.5 million dollars .", "{PER} told reporters in {LOC} that prices fell .",
    "Talks between {LOC} and {LOC} resumed on Wednesday .", "{PER} ( {LOC} ) 1:42.3",
    "{ORG} chairman {PER} resigned .", "Prices were unchanged on Thursday .", "It was not clear when the talks would end .",
    "The {MISC} economy grew 2.1 percent in the second quarter .", "{LOC} 4 {LOC} 1",
    "{PER} said {ORG} had no comment .", "Fans in {LOC} celebrated the {MISC} victory .",
    "{ORG} agreed to buy {ORG} for 300 million dollars .", "Results of the {MISC} in {LOC} :",
]


def pick_entity(kind: str, rng: random.Random, held_out: bool) -> str:
    if kind == "PER":
        first = HELD_OUT["PER_FIRST"] if held_out else FIRST
        last = HELD_OUT["PER_LAST"] if held_out else LAST
        return rng.choice([f"{rng.choice(first)} {rng.choice(last)}", rng.choice(last)])
    if kind == "LOC":
        return rng.choice(HELD_OUT["LOC"] if held_out else CITIES + COUNTRIES)
    return rng.choice(HELD_OUT[kind] if held_out else (ORGS if kind == "ORG" else MISC))


def english_sentence(rng: random.Random, unseen_rate: float) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for part in rng.choice(TEMPLATES).split():
        if part.startswith("{") and part.endswith("}"):
            kind = part[1:-1]
            words = pick_entity(kind, rng, rng.random() < unseen_rate).split()
            rows += [(w, ("B-" if i == 0 else "I-") + kind) for i, w in enumerate(words)]
        else:
            rows.append((part, "O"))
    return rows


ZH_SURNAMES = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗")
ZH_GIVEN = list("伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂")
ZH_PLACES = ["北京", "上海", "广州", "深圳", "杭州", "南京", "成都", "武汉", "西安", "青州", "云川", "明港"]
ZH_ORG_HEADS = ["华夏", "东方", "长江", "星海", "新民", "远航", "金桥", "天衡"]
ZH_ORG_TAILS = ["公司", "大学", "银行", "集团", "研究所"]
ZH_TEMPLATES = ["{PER}在{LOC}工作。", "{PER}是{ORG}的工程师。", "{ORG}在{LOC}开设了新办公室。",
                "昨天{PER}和{PER}去了{LOC}。", "{LOC}的{ORG}宣布利润增长了12%。", "今天天气很好，我们去公园。",
                "{PER}说：{ORG}不会裁员。", "记者在{LOC}采访了{PER}。", "{ORG}与{ORG}签署了合作协议。",
                "{PER}毕业于{ORG}，现在住在{LOC}。", "2024年{LOC}举办了AI大会。"]


def chinese_entity(kind: str, rng: random.Random) -> str:
    if kind == "PER":
        return rng.choice(ZH_SURNAMES) + "".join(rng.choice(ZH_GIVEN) for _ in range(rng.choice([1, 2])))
    if kind == "LOC":
        return rng.choice(ZH_PLACES)
    return rng.choice(ZH_PLACES + ZH_ORG_HEADS) + rng.choice(ZH_ORG_TAILS)


def chinese_sentence(rng: random.Random) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    template = rng.choice(ZH_TEMPLATES)
    i = 0
    while i < len(template):
        if template[i] == "{":
            j = template.index("}", i)
            kind, chars = template[i + 1 : j], chinese_entity(template[i + 1 : j], rng)
            if len(chars) == 1:
                rows.append((chars, f"S-{kind}"))
            else:
                rows += [(c, ("B-" if k == 0 else "E-" if k == len(chars) - 1 else "M-") + kind)
                         for k, c in enumerate(chars)]
            i = j + 1
        else:
            rows.append((template[i], "O"))
            i += 1
    return rows


def write(path: Path, sentences: list[list[tuple[str, str]]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join("".join(f"{w} {t}\n" for w, t in s) + "\n" for s in sentences), encoding="utf-8")


def main() -> None:
    rng = random.Random(2026)
    for split, n, unseen in (("train", 3000, 0.0), ("dev", 500, 0.3), ("test", 500, 0.3)):
        write(HERE / "en" / f"{split}.txt", [english_sentence(rng, unseen) for _ in range(n)])
    for split, n in (("train", 1500), ("dev", 300), ("test", 300)):
        write(HERE / "zh" / f"{split}.txt", [chinese_sentence(rng) for _ in range(n)])


if __name__ == "__main__":
    main()
