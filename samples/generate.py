"""Write the synthetic sample corpora: English NER (IOB2) and Chinese character-level NER (BMES).

    python samples/generate.py

Everything comes from the templates and name lists below, written for this project; nothing is copied from
CoNLL-2003 or any other corpus. People, companies and most places are invented (a few well-known cities,
countries, nationalities and events are kept so that a sample model can say something about everyday
text). Deterministic: each file has its own seeded generator, so re-running reproduces every file byte for
byte. Dev and test draw about a third of their names from held-out lists that training never sees, so a
model has to generalise from context and word shape. English tokens are written the way `tagger.text`'s
"words" tokeniser cuts raw text (`Germany 's`, `Inc.`, `1,200`, `6-4`), which tests/test_text.py checks.
"""
from __future__ import annotations

import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
Row = tuple[str, str]

# -- English --------------------------------------------------------------------------------------------

FIRST = ("Anna Boris Carla Dmitri Elena Farid Greta Hiro Ines Jonas Katya Luis Marta Nadia Omar Priya Quentin "
         "Rosa Sven Tariq Ulla Viktor Wen Xavier Yara Zoltan Amira Bruno Chloe Diego Edith Felix Gideon Hana "
         "Ivo Jana Kofi Lena Malik Nora Oskar Paula Rafael Selma Theo Uma Vera Walter Yusuf Zoe José Zoë Björn "
         "Aiko Declan Esther Marco Sofia Tobias").split()
LAST = ("Novak Okafor Lindqvist Moreau Tanaka Petrov Silva Kowalski Haddad Brennan Fischer Ortega Nakamura Adeyemi "
        "Larsen Romano Duval Weber Costa Ivanova Mendez Sato Keller Dubois Varga Quinn Halvorsen Bauer Hartmann "
        "Whitcombe Delacroix Marsh Castellan Brody Ferreira Lund Ashworth Kimura Radu Szabo Holm Pereira Dunbar "
        "Müller Aldous Kessler Carrow Fontaine Oyelaran Vance Strand Morrow Kincaid O'Hare Abernathy").split()
CITIES = ("Veldmark Porto-Azul Kesh Lunaria Brightwater Oskarsby Marlow Tessaly Dunmere Caldera Rivenport Ashby "
          "Northwick Kairo Eastfield Glenmoor Vastad Paris Berlin London Tokyo Madrid Nairobi Lima Oslo "
          "Toronto Sydney Cairo Seoul Vienna Lisbon").split() + ["New York", "Rio de Janeiro", "San Marco", "Port Elder"]
COUNTRIES = ("Freedonia Valdoria Mirelia Ostrava Kandor Lumeria Zembla Arcadia Norland Qurac Germany France Japan "
             "Brazil Kenya Canada Italy Norway Egypt Peru").split() + ["South Korea", "New Zealand"]
COMPANY_HEADS = ("Helix Veltrix Bluewave Orion Greenleaf Apex Norhaven Calder Brightline Ostra Kestrel Solvane "
                 "Tideway Marrick Quorra Halden Stellan Corvane Ironbridge Pellam").split()
COMPANY_TAILS = ["Inc.", "Corp.", "AG", "Ltd.", "Group", "Holdings", "Systems", "Motors", "Bank", "Airlines",
                 "Mining Corp.", "Foods Inc.", "Telecom", "Energy", "Pharma AG", "& Co."]
CLUB_TAILS = ["United", "Rovers", "City", "Athletic", "Wanderers", "FC"]
AGENCIES = ["Kandor Press Agency", "Norhaven Herald", "Daily Meridian", "Valdoria Football Federation",
            "Central Bank of Lumeria", "World Trade Council", "NORSTAT", "UNESCO", "ICAF", "Lunaria Times"]
NATIONALITIES = ("German French Japanese Brazilian Kenyan Italian Norwegian Canadian Valdorian Mirelian Kandorese "
                 "Lumerian Freedonian Zemblan Norlandic Arcadian").split()
EVENTS = ["World Cup", "Olympics", "Grand Prix", "Arcadian Open", "Nobel Prize", "Tour of Valdoria",
          "Winter Olympics", "Lumeria Masters", "Northern Cup", "Cold War"]
LANGUAGES = "English French Spanish Mandarin Arabic Valdorian Swahili Portuguese".split()
HELD_OUT = {
    "FIRST": "Ilse Mateo Noor Pavel Sunita Tomas Leila Anders Chidi Mirela Rowan Kasia".split(),
    "LAST": "Eriksen Obi Castellano Mbeki Yilmaz Sorensen Achterberg Quiroga Lindgren Nwosu Harwell Draxler".split(),
    "CITY": ["Harrowgate", "Mirabel", "Stonehaven", "Cordova-Alta", "Qasira", "Prague", "Bogota", "Fort Alder"],
    "COUNTRY": ["Estoria", "Calvania", "Chile", "Vietnam", "Saint Brevia"],
    "COMPANY_HEAD": "Quantix Solent Ferrovia Dravik Amberline Nexora".split(),
    "AGENCY": ["Estoria News Service", "Calvania Railways Board", "ASTRAL"],
    "NAT": ["Estorian", "Calvanian", "Chilean", "Vietnamese"],
    "EVENT": ["Estoria Cup", "Calvanian Grand Prix", "Winter Games"],
    "LANG": ["Estorian", "Tagalog"],
}

DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
MONTHS = "January February March April June July August September October November December".split()

# {PER} full name or surname, {FULL} full name, {CITY} {COUNTRY} {LOC} (either) -> LOC; {COMPANY} {CLUB}
# {AGENCY} {ORG} (any) -> ORG; {NAT} {EVENT} {LANG} -> MISC; lower-case slots are fillers tagged O.
EN_TEMPLATES = [
    "{FULL} visited {LOC} on {day} .",
    "{PER} , a spokesman for {ORG} , said the deal was off .",
    "Shares of {COMPANY} rose {pct} percent in {CITY} on {day} .",
    "{COMPANY} shares fell {pct} percent after the company warned on profits .",
    "{CLUB} beat {CLUB} {score} in {CITY} on {day} .",
    "{CLUB} and {CLUB} drew {draw} in their {EVENT} qualifier .",
    "\" We are very pleased with the result , \" said {FULL} of {ORG} .",
    "\" This is not the end , \" {PER} told reporters in {CITY} .",
    "The {NAT} minister {FULL} arrived in {LOC} late on {day} .",
    "{NAT} officials said on {day} that talks with {COUNTRY} would resume in {month} .",
    "{FULL} won the {EVENT} in {CITY} .",
    "{NAT} {FULL} won the {EVENT} on {day} .",
    "{CITY} police arrested two men on {day} , {PER} said .",
    "{COMPANY} said it would cut {num} jobs in {LOC} .",
    "{FULL} and {FULL} met in {CITY} to discuss trade .",
    "The {NAT} team lost to {COUNTRY} in the {EVENT} final .",
    "{COMPANY} opened a new office in {CITY} , {COUNTRY} .",
    "In {LOC} , {COMPANY} reported a profit of {money} million dollars .",
    "Talks between {COUNTRY} and {COUNTRY} resumed on {day} .",
    "{FULL} ( {COUNTRY} ) {time}",
    "{FULL} ( {COUNTRY} ) beat {FULL} ( {COUNTRY} ) {set} {set}",
    "{CLUB} {goals} {CLUB} {goals}",
    "{ORG} chairman {FULL} resigned on {day} .",
    "{COMPANY} agreed to buy {COMPANY} for {money} million dollars .",
    "{COUNTRY} 's central bank cut interest rates by {pct} percentage points .",
    "{PER} 's lawyer said his client would appeal .",
    "Fans in {CITY} celebrated the {EVENT} victory .",
    "{PER} , who speaks {LANG} and {LANG} , will lead the {ORG} delegation .",
    "The book was translated from {LANG} into {LANG} last year .",
    "{AGENCY} said the {NAT} economy grew {pct} percent in the second quarter .",
    "{CITY} {date}",
    "{CITY} , {month} {dom} ( {AGENCY} ) - {COMPANY} said on {day} it had won a contract in {COUNTRY} .",
    "Results of the {EVENT} in {CITY} on {day} :",
    "Former {NAT} champion {FULL} retired at the age of {age} .",
    "{FULL} , {age} , joined {CLUB} from {CLUB} for an undisclosed fee .",
    "The {EVENT} will be held in {LOC} in {month} .",
    "{ORG} rejected the {NAT} proposal .",
    "{LOC} rejects {NAT} call to boycott {NAT} beef .",
    "Mr. {LAST} told {AGENCY} that {COMPANY} had no plans to sell .",
    "Dr. {FULL} of {AGENCY} said the results were encouraging .",
    "{COMPANY} , based in {CITY} , makes parts for {COMPANY} .",
    "Asked about {COUNTRY} , {PER} said : \" We will see . \"",
    "Prices were unchanged on {day} .",
    "It was not clear when the talks would end .",
    "The index fell {pct} percent in thin trading .",
    "Nobody was hurt in the fire , police said .",
    "Rain delayed play for two hours on {day} .",
    "The vote is expected next week .",
    "He did n't say when the plant would reopen .",
    "Trading was quiet ahead of the holiday on {day} .",
]
EN_UPPER_RATE = 0.04      # headlines in capitals, as agency copy has them


def name_pool(key: str, base: list[str], held: bool) -> list[str]:
    return HELD_OUT[key] if held else base


def english_entity(slot: str, rng: random.Random, held: bool) -> tuple[str, str]:
    """(text, type) of an entity slot; `held`: draw from the names training never sees."""
    full = f"{rng.choice(name_pool('FIRST', FIRST, held))} {rng.choice(name_pool('LAST', LAST, held))}"
    company = f"{rng.choice(name_pool('COMPANY_HEAD', COMPANY_HEADS, held))} {rng.choice(COMPANY_TAILS)}"
    city = rng.choice(name_pool("CITY", CITIES, held))
    club = rng.choice([f"{city} {rng.choice(CLUB_TAILS)}", f"FC {city}"] if rng.random() < 0.9 else [city])
    country = rng.choice(name_pool("COUNTRY", COUNTRIES, held))
    agency = rng.choice(name_pool("AGENCY", AGENCIES, held))
    choices = {
        "FULL": (full, "PER"), "PER": (rng.choice([full, full.split()[-1]]), "PER"),
        "LAST": (rng.choice(name_pool("LAST", LAST, held)), "PER"),
        "CITY": (city, "LOC"), "COUNTRY": (country, "LOC"), "LOC": (rng.choice([city, country]), "LOC"),
        "COMPANY": (company, "ORG"), "CLUB": (club, "ORG"), "AGENCY": (agency, "ORG"),
        "ORG": (rng.choice([company, club, agency]), "ORG"),
        "NAT": (rng.choice(name_pool("NAT", NATIONALITIES, held)), "MISC"),
        "EVENT": (rng.choice(name_pool("EVENT", EVENTS, held)), "MISC"),
        "LANG": (rng.choice(name_pool("LANG", LANGUAGES, held)), "MISC"),
    }
    return choices[slot]


def english_filler(slot: str, rng: random.Random) -> str:
    """A token for a lower-case (non-entity) slot."""
    fillers = {
        "day": lambda: rng.choice(DAYS), "month": lambda: rng.choice(MONTHS),
        "dom": lambda: str(rng.randint(1, 28)), "age": lambda: str(rng.randint(19, 71)),
        "pct": lambda: rng.choice([str(rng.randint(1, 9)), f"{rng.randint(0, 12)}.{rng.randint(1, 9)}"]),
        "num": lambda: rng.choice([str(rng.randint(20, 900)), f"{rng.randint(1, 12)},{rng.randint(0, 999):03d}"]),
        "money": lambda: rng.choice([str(rng.randint(2, 950)), f"{rng.randint(1, 99)}.{rng.randint(1, 9)}"]),
        "score": lambda: f"{rng.randint(1, 5)}-{rng.randint(0, 4)}",
        "draw": lambda: f"{(g := rng.randint(0, 3))}-{g}",
        "goals": lambda: str(rng.randint(0, 5)),
        "set": lambda: rng.choice(["6-4", "6-3", "7-5", "6-2", "7-6", "6-1", "4-6", "3-6"]),
        "time": lambda: f"{rng.randint(1, 3)}:{rng.randint(0, 59):02d}.{rng.randint(0, 99):02d}",
        "date": lambda: f"{rng.randint(1995, 2024)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
    }
    return fillers[slot]()


def english_sentence(rng: random.Random, held_out_rate: float) -> list[Row]:
    """One IOB2 sentence from a random template."""
    rows: list[Row] = []
    for part in rng.choice(EN_TEMPLATES).split():
        if not (part.startswith("{") and part.endswith("}")):
            rows.append((part, "O"))
        elif part[1].islower():
            rows.append((english_filler(part[1:-1], rng), "O"))
        else:
            text, kind = english_entity(part[1:-1], rng, rng.random() < held_out_rate)
            rows += [(w, f"{'B' if i == 0 else 'I'}-{kind}") for i, w in enumerate(text.split())]
    if rng.random() < EN_UPPER_RATE:
        rows = [(w.upper(), t) for w, t in rows]
    return rows


# -- Chinese --------------------------------------------------------------------------------------------

ZH_SURNAMES = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹")
ZH_GIVEN = list("伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂晨宇欣然浩思雨婷博文佳琪子轩梓涵一诺")
ZH_PLACES = ["北京", "上海", "广州", "深圳", "杭州", "南京", "成都", "武汉", "西安", "青川", "云港", "明州", "江宁",
             "临海", "东川", "南屿", "重庆", "天津"]
ZH_ORG_HEADS = ["华信", "东泰", "新远", "星海", "金桥", "天衡", "远航", "长风", "瑞丰", "中科"]
ZH_ORG_TAILS = ["公司", "大学", "银行", "集团", "研究院", "医院", "科技有限公司", "电视台"]
ZH_HELD_OUT = {"SURNAME": list("彭蒋蔡叶"), "GIVEN": list("骁蕾昊瑶"),
               "PLACE": ["苏州", "宁川", "白鹭湾", "厦门"], "ORG_HEAD": ["鼎盛", "蓝海", "恒通"]}
ZH_TEMPLATES = [
    "{PER}在{LOC}工作。", "{PER}是{ORG}的工程师。", "{ORG}在{LOC}开设了新办公室。", "昨天{PER}和{PER}去了{LOC}。",
    "{LOC}的{ORG}宣布利润增长了12%。", "今天天气很好，我们去公园。", "{PER}说：“{ORG}不会裁员。”",
    "记者在{LOC}采访了{PER}。", "{ORG}与{ORG}签署了合作协议。", "{PER}毕业于{ORG}，现在住在{LOC}。",
    "2024年{LOC}举办了AI大会。", "{PER}用iPhone拍了3张照片。", "{ORG}发布了X5手机，售价2999元。",
    "{LOC}今年的GDP增长了5%。", "{PER}昨天在{LOC}参加了5G论坛！", "你知道{PER}去哪儿了吗？",
    "{ORG}董事长{PER}表示，公司将在{LOC}投资10亿元。", "{PER}和{PER}是{ORG}的同学。", "会议将于明年3月举行。",
    "{LOC}到{LOC}的高铁只要2小时。", "{PER}：我很喜欢{LOC}。", "据{ORG}消息，{PER}已经离开{LOC}。",
    "{PER}在{ORG}学习了4年英语。", "这本书很有意思，值得一读。", "{ORG}的App下载量超过100万。",
]


def zh_entity(kind: str, rng: random.Random, held: bool) -> str:
    """Characters of a PER, LOC or ORG name; `held`: partly from names training never sees."""
    def pool(key: str, base: list[str]) -> list[str]:
        return ZH_HELD_OUT[key] if held else base

    if kind == "PER":
        given = [rng.choice(pool("GIVEN", ZH_GIVEN))] + [rng.choice(ZH_GIVEN) for _ in range(rng.randint(0, 1))]
        return rng.choice(pool("SURNAME", ZH_SURNAMES)) + "".join(rng.sample(given, len(given)))
    if kind == "LOC":
        return rng.choice(pool("PLACE", ZH_PLACES))
    return rng.choice(pool("PLACE", ZH_PLACES) + pool("ORG_HEAD", ZH_ORG_HEADS)) + rng.choice(ZH_ORG_TAILS)


def bmes(chars: str, kind: str) -> list[Row]:
    if len(chars) == 1:
        return [(chars, f"S-{kind}")]
    return [(c, f"{'B' if i == 0 else 'E' if i == len(chars) - 1 else 'M'}-{kind}") for i, c in enumerate(chars)]


def chinese_sentence(rng: random.Random, held_out_rate: float) -> list[Row]:
    """One BMES sentence, one character a token, from a random template."""
    rows: list[Row] = []
    template, i = rng.choice(ZH_TEMPLATES), 0
    while i < len(template):
        if template[i] == "{":
            j = template.index("}", i)
            kind = template[i + 1:j]
            rows += bmes(zh_entity(kind, rng, rng.random() < held_out_rate), kind)
            i = j + 1
        else:
            rows.append((template[i], "O"))
            i += 1
    return rows


# -- files ----------------------------------------------------------------------------------------------

def write(path: Path, sentences: list[list[Row]]) -> None:
    """Two columns `token TAG`, a blank line between sentences, UTF-8, LF."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        out.write("\n".join("".join(f"{w} {t}\n" for w, t in s) for s in sentences))


SPLITS = {"train": (0.0, 1), "dev": (0.35, 2), "test": (0.35, 3)}   # held-out rate, seed offset


def main() -> None:
    for split, n in (("train", 3000), ("dev", 500), ("test", 500)):
        rate, seed = SPLITS[split]
        rng = random.Random(1000 + seed)
        write(HERE / "en" / f"{split}.txt", [english_sentence(rng, rate) for _ in range(n)])
    for split, n in (("train", 1500), ("dev", 300), ("test", 300)):
        rate, seed = SPLITS[split]
        rng = random.Random(2000 + seed)
        write(HERE / "zh" / f"{split}.txt", [chinese_sentence(rng, rate) for _ in range(n)])


if __name__ == "__main__":
    main()
