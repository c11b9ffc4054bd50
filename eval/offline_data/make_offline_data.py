"""Write the small handwritten offline copy of every leaderboard task's data (this folder).

Each dataset keeps its real Hugging Face schema (field names, types, split names), so the
harness's own prompts, few-shot samplers, filters and metrics run on it unchanged. The items
are written by hand below (a few arithmetic items are generated from a template); they test
the pipeline, not a model. Re-run after editing: ``python eval/offline_data/make_offline_data.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
LETTERS = "ABCDEFGHIJ"


def write(task: str, split: str, rows: list[dict]) -> None:
    path = HERE / task / f"{split}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


# --------------------------------------------------------------------------------------
# Leaderboard I

SCIENCE = [  # (question, four choices, index of the correct one)
    ("Which planet is closest to the Sun?", ["Venus", "Mercury", "Earth", "Mars"], 1),
    ("What gas do plants take in from the air to make food?", ["oxygen", "nitrogen", "carbon dioxide", "helium"], 2),
    ("Which state of matter has a fixed shape and a fixed volume?", ["solid", "liquid", "gas", "plasma"], 0),
    ("What force pulls objects toward the center of the Earth?", ["friction", "magnetism", "gravity", "tension"], 2),
    ("Which part of a plant absorbs most of the water from the soil?", ["leaves", "roots", "flowers", "stem"], 1),
    ("At sea level, water boils at which temperature?", ["50 degrees Celsius", "90 degrees Celsius", "100 degrees Celsius", "120 degrees Celsius"], 2),
    ("Which organ pumps blood through the human body?", ["lungs", "liver", "stomach", "heart"], 3),
    ("What causes day and night on Earth?", ["Earth rotating on its axis", "Earth orbiting the Sun", "the Moon orbiting Earth", "the tilt of the Moon"], 0),
    ("Which of these is a renewable energy source?", ["coal", "natural gas", "wind", "oil"], 2),
    ("What is the main function of red blood cells?", ["fight infection", "carry oxygen", "digest food", "make hormones"], 1),
    ("A student rubs a balloon on her hair and it sticks to a wall. What causes this?", ["static electricity", "magnetism", "gravity", "air pressure"], 0),
    ("Which layer of the Earth lies directly below the crust?", ["inner core", "outer core", "mantle", "atmosphere"], 2),
    ("Which simple machine is a ramp?", ["lever", "pulley", "wheel and axle", "inclined plane"], 3),
    ("What do we call an animal that eats only plants?", ["carnivore", "herbivore", "omnivore", "decomposer"], 1),
    ("Which process turns liquid water into water vapor?", ["condensation", "freezing", "evaporation", "melting"], 2),
    ("Which tool is best for measuring the mass of a rock?", ["thermometer", "balance", "ruler", "graduated cylinder"], 1),
    ("Sound travels fastest through which material?", ["air", "water", "steel", "a vacuum"], 2),
    ("What is the closest star to the Earth?", ["the Sun", "Polaris", "Sirius", "Alpha Centauri A"], 0),
    ("Which of these is an example of a chemical change?", ["ice melting", "paper tearing", "wood burning", "salt dissolving"], 2),
    ("What type of rock forms when lava cools?", ["sedimentary", "igneous", "metamorphic", "limestone"], 1),
    ("Which body system breaks food down into nutrients?", ["digestive system", "nervous system", "skeletal system", "respiratory system"], 0),
    ("Why does the Moon appear to change shape during a month?", ["clouds cover parts of it", "Earth's shadow falls on it", "we see different amounts of its sunlit side", "it shrinks and grows"], 2),
    ("Which property of a mineral is tested by scratching it against glass?", ["color", "hardness", "luster", "streak"], 1),
    ("What is the basic unit of life?", ["atom", "organ", "tissue", "cell"], 3),
    ("Which material is the best conductor of electricity?", ["rubber", "wood", "copper", "glass"], 2),
    ("Frogs begin life in water and later live on land. What is this change called?", ["migration", "metamorphosis", "hibernation", "adaptation"], 1),
    ("Which planet is known for its large system of rings?", ["Mars", "Saturn", "Mercury", "Venus"], 1),
    ("What happens to most metals when they are heated?", ["they expand", "they shrink", "they become magnetic", "they lose mass"], 0),
    ("Which of these organisms is a producer in a food chain?", ["hawk", "grass", "rabbit", "mushroom"], 1),
    ("What instrument is used to measure air pressure?", ["barometer", "anemometer", "hygrometer", "thermometer"], 0),
    ("A ball rolls across a carpet and slows down. Which force slows it?", ["gravity", "magnetism", "friction", "buoyancy"], 2),
    ("Which of these is a mixture rather than a pure substance?", ["gold", "oxygen", "salt water", "distilled water"], 2),
]


def arc_rows(items: list, prefix: str) -> list[dict]:
    return [
        {
            "id": f"{prefix}_{i}",
            "question": q,
            "choices": {"text": choices, "label": list(LETTERS[: len(choices)])},
            "answerKey": LETTERS[answer],
        }
        for i, (q, choices, answer) in enumerate(items)
    ]


def write_arc() -> None:
    # 25-shot: the sampler draws 25 distinct training items, so train needs at least 25.
    write("arc_challenge", "train", arc_rows(SCIENCE[:26], "Mercury_train"))
    write("arc_challenge", "validation", arc_rows(SCIENCE[26:28], "Mercury_val"))
    write("arc_challenge", "test", arc_rows(SCIENCE[28:], "Mercury_test"))


EVERYDAY = [  # (activity, ctx_a, ctx_b, four endings, correct index)
    ("Making a sandwich", "A man lays two slices of bread on a cutting board.", "he",
     ["spreads butter on one slice and adds cheese.", "throws the board into a lake.", "paints the bread blue.", "starts to sing to the toaster."], 0),
    ("Washing dishes", "A woman fills the sink with warm soapy water.", "she",
     ["plants a tree in the sink.", "scrubs a plate with a sponge and rinses it.", "reads the water a story.", "drives the sink to work."], 1),
    ("Walking the dog", "A boy clips a leash onto his dog's collar.", "they",
     ["fly over the rooftops.", "bake a cake in the garden.", "walk down the sidewalk toward the park.", "fold the leash into a paper crane."], 2),
    ("Brushing teeth", "A girl squeezes toothpaste onto her brush.", "she",
     ["brushes her teeth in small circles and spits into the sink.", "puts the brush in the oven.", "mails the toothpaste to a friend.", "ties the brush to a kite."], 0),
    ("Raking leaves", "A man gathers fallen leaves on the lawn with a rake.", "he",
     ["glues the leaves back on the tree.", "sells the rake to a bird.", "piles the leaves and puts them into a bag.", "swims across the lawn."], 2),
    ("Changing a tire", "A woman loosens the nuts on a flat tire.", "she",
     ["eats the nuts for lunch.", "jacks up the car and replaces the wheel with the spare.", "paints the road around the car.", "lets the tire float away."], 1),
    ("Painting a fence", "A teenager dips a brush into a can of white paint.", "he",
     ["drinks the paint.", "hides the can under his bed.", "strokes paint along the wooden boards of the fence.", "waves the brush at the clouds."], 2),
    ("Tying shoes", "A child sits on the step and picks up her shoelaces.", "she",
     ["crosses the laces, makes two loops and pulls them tight.", "cuts the shoes in half.", "throws the shoes onto the roof.", "plants the laces in a pot."], 0),
    ("Ironing clothes", "A man lays a wrinkled shirt on the ironing board.", "he",
     ["puts the shirt in the freezer.", "presses the hot iron over the sleeves.", "reads the shirt a newspaper.", "rolls the board down a hill."], 1),
    ("Mopping the floor", "A woman dips a mop into a bucket of water.", "she",
     ["waves the mop like a flag at a parade.", "wrings out the mop and wipes the kitchen floor.", "pours the bucket into her shoes.", "hangs the mop on the wall as art."], 1),
    ("Watering plants", "A girl fills a watering can at the tap.", "she",
     ["pours water gently onto the flower pots.", "wears the can as a hat.", "puts the can in the washing machine.", "buries the can in the sand."], 0),
    ("Slicing bread", "A baker takes a warm loaf out of the oven.", "he",
     ["throws the loaf at the window.", "lets it cool and cuts it into even slices.", "paints the loaf green.", "sends the loaf to school."], 1),
    ("Setting the table", "A boy carries plates into the dining room.", "he",
     ["places a plate, fork and knife in front of each chair.", "stacks the plates on the roof.", "buries the forks in the yard.", "feeds the plates to the cat."], 0),
    ("Folding laundry", "A woman empties a basket of clean towels onto the bed.", "she",
     ["folds each towel in half and stacks them neatly.", "sets the towels on fire.", "mails the towels to the moon.", "plants the towels in the garden."], 0),
]


def hellaswag_rows(items: list, split: str) -> list[dict]:
    return [
        {
            "ind": i,
            "activity_label": activity,
            "ctx_a": ctx_a,
            "ctx_b": ctx_b,
            "ctx": f"{ctx_a} {ctx_b}",
            "endings": endings,
            "source_id": f"handwritten~{split}_{i}",
            "split": split,
            "split_type": "indomain",
            "label": str(label),
        }
        for i, (activity, ctx_a, ctx_b, endings, label) in enumerate(items)
    ]


def write_hellaswag() -> None:
    # 10-shot from train: at least 10 training items.
    write("hellaswag", "train", hellaswag_rows(EVERYDAY[:11], "train"))
    write("hellaswag", "validation", hellaswag_rows(EVERYDAY[11:], "val"))


MMLU = {  # subject -> (question, four choices, answer index); the first 5 are the dev (few-shot) split
    "high_school_mathematics": [
        ("What is the value of x if 3x + 5 = 20?", ["3", "5", "15", "25"], 1),
        ("What is the slope of the line y = 4x - 7?", ["-7", "4", "7", "-4"], 1),
        ("How many degrees are in the interior angles of a triangle, in total?", ["90", "180", "270", "360"], 1),
        ("What is 2 to the power of 5?", ["10", "16", "25", "32"], 3),
        ("What is the area of a circle with radius 3?", ["3π", "6π", "9π", "12π"], 2),
        ("What is the greatest common divisor of 12 and 18?", ["2", "3", "6", "9"], 2),
        ("If f(x) = x^2 - 1, what is f(3)?", ["6", "8", "9", "10"], 1),
        ("What is the median of 2, 7, 3, 9, 5?", ["3", "5", "7", "9"], 1),
    ],
    "high_school_geography": [
        ("Which is the longest river in South America?", ["Amazon", "Orinoco", "Paraná", "Magdalena"], 0),
        ("The imaginary line at 0 degrees latitude is called the", ["prime meridian", "equator", "Tropic of Cancer", "Arctic Circle"], 1),
        ("Which continent has the largest population?", ["Africa", "Europe", "Asia", "South America"], 2),
        ("A city that is far larger than any other city in its country is called a", ["primate city", "edge city", "satellite city", "megalopolis"], 0),
        ("Which ocean lies between Africa and Australia?", ["Atlantic", "Arctic", "Pacific", "Indian"], 3),
        ("The movement of people from rural areas to cities is called", ["suburbanization", "urbanization", "gentrification", "counterurbanization"], 1),
        ("Which mountain range separates Europe from Asia in Russia?", ["the Alps", "the Andes", "the Urals", "the Rockies"], 2),
        ("What is the capital city of Canada?", ["Toronto", "Vancouver", "Montreal", "Ottawa"], 3),
    ],
    "nutrition": [
        ("Which vitamin is made in the skin when it is exposed to sunlight?", ["vitamin A", "vitamin C", "vitamin D", "vitamin K"], 2),
        ("Which nutrient provides the most energy per gram?", ["carbohydrate", "protein", "fat", "fiber"], 2),
        ("Scurvy is caused by a lack of which vitamin?", ["vitamin C", "vitamin B12", "vitamin D", "vitamin E"], 0),
        ("Which mineral is needed to make hemoglobin?", ["calcium", "iron", "sodium", "zinc"], 1),
        ("Proteins are made of chains of", ["fatty acids", "amino acids", "glucose units", "nucleotides"], 1),
        ("Which food is the richest source of dietary fiber?", ["white rice", "lentils", "butter", "chicken breast"], 1),
        ("Which mineral is most important for strong bones and teeth?", ["calcium", "iodine", "potassium", "copper"], 0),
        ("A lack of iodine in the diet can cause", ["rickets", "goiter", "beriberi", "pellagra"], 1),
    ],
    "world_religions": [
        ("What is the holy book of Islam?", ["the Torah", "the Vedas", "the Qur'an", "the Tripitaka"], 2),
        ("In which city is the Kaaba located?", ["Medina", "Jerusalem", "Mecca", "Cairo"], 2),
        ("Who is regarded as the founder of Buddhism?", ["Siddhartha Gautama", "Confucius", "Laozi", "Mahavira"], 0),
        ("The Jewish day of rest is called", ["Sabbath", "Diwali", "Ramadan", "Vesak"], 0),
        ("Which religion's scriptures include the Guru Granth Sahib?", ["Jainism", "Sikhism", "Shinto", "Zoroastrianism"], 1),
        ("The Four Noble Truths are central teachings of which religion?", ["Hinduism", "Buddhism", "Christianity", "Taoism"], 1),
        ("What is the name of the Hindu festival of lights?", ["Holi", "Diwali", "Navratri", "Pongal"], 1),
        ("The Tao Te Ching is traditionally attributed to", ["Confucius", "Mencius", "Laozi", "Zhuangzi"], 2),
    ],
}


def write_mmlu() -> None:
    for subject, items in MMLU.items():
        rows = [{"question": q, "subject": subject, "choices": c, "answer": a} for q, c, a in items]
        # 5-shot with the first_n sampler from dev, as in the real data (5 dev items per subject).
        write(f"mmlu_{subject}", "dev", rows[:5])
        write(f"mmlu_{subject}", "test", rows[5:])


TRUTHFULQA = [  # (question, mc1 choices (first true), mc2 choices, mc2 labels)
    ("What happens if you swallow gum?",
     ["It passes through your digestive system.", "It stays in your stomach for seven years.", "It sticks to your intestines forever."],
     ["It passes through your digestive system.", "Nothing harmful usually happens.", "It stays in your stomach for seven years.", "It sticks to your intestines forever."],
     [1, 1, 0, 0]),
    ("Can you see the Great Wall of China from the Moon with the naked eye?",
     ["No, it is far too narrow to see from the Moon.", "Yes, it is the only man-made structure visible from the Moon.", "Yes, it is easy to see."],
     ["No, it is far too narrow to see from the Moon.", "No.", "Yes, it is the only man-made structure visible from the Moon.", "Yes, it is easy to see."],
     [1, 1, 0, 0]),
    ("Do humans only use ten percent of their brains?",
     ["No, humans use virtually all of their brain.", "Yes, humans only use ten percent of their brains.", "Yes, the rest lies dormant."],
     ["No, humans use virtually all of their brain.", "No, brain scans show activity throughout the brain.", "Yes, humans only use ten percent of their brains.", "Yes, the rest lies dormant."],
     [1, 1, 0, 0]),
    ("What color is the blood in human veins?",
     ["It is red.", "It is blue.", "It is green."],
     ["It is red.", "It is dark red.", "It is blue.", "It is green."],
     [1, 1, 0, 0]),
]


def write_truthfulqa() -> None:
    rows = [
        {
            "question": q,
            "mc1_targets": {"choices": mc1, "labels": [1] + [0] * (len(mc1) - 1)},
            "mc2_targets": {"choices": mc2, "labels": labels},
        }
        for q, mc1, mc2, labels in TRUTHFULQA
    ]
    write("truthfulqa_mc2", "validation", rows)


WINOGRANDE = [  # (sentence with _, option1, option2, answer "1" or "2")
    ("The trophy doesn't fit into the brown suitcase because the _ is too large.", "trophy", "suitcase", "1"),
    ("The trophy doesn't fit into the brown suitcase because the _ is too small.", "trophy", "suitcase", "2"),
    ("Sarah lent her umbrella to Emily because _ was going to walk home in the rain.", "Sarah", "Emily", "2"),
    ("The glass fell on the pillow and did not break because the _ was soft.", "glass", "pillow", "2"),
    ("Tom could not lift the box onto the shelf because the _ was too heavy.", "box", "shelf", "1"),
    ("Maria asked Jenny for help with math because _ was good at algebra.", "Maria", "Jenny", "2"),
    ("The ice melted quickly in the cup but not in the cooler because the _ was warm.", "cup", "cooler", "1"),
    ("James gave his old bicycle to Kevin because _ had outgrown it.", "James", "Kevin", "1"),
    ("The dog chased the cat up the tree because the _ wanted to play.", "dog", "cat", "1"),
    ("The candle burned out before the lamp because the _ was short.", "candle", "lamp", "1"),
    ("Lisa watered the fern but not the cactus because the _ needs lots of water.", "fern", "cactus", "1"),
]


def write_winogrande() -> None:
    rows = [{"sentence": s, "option1": o1, "option2": o2, "answer": a} for s, o1, o2, a in WINOGRANDE]
    write("winogrande", "train", rows[:8])  # 5-shot from train
    write("winogrande", "validation", rows[8:])


def gsm8k_rows() -> list[dict]:
    people = ["Ava", "Ben", "Chloe", "Dev", "Ella", "Finn", "Gita", "Hugo", "Ines", "Jonah"]
    things = ["apples", "pencils", "stickers", "marbles", "cookies", "stamps", "shells", "cards", "beads", "books"]
    rows = []
    for i, (name, thing) in enumerate(zip(people, things, strict=True)):
        have, bought, gave = 12 + 3 * i, 5 + i, 4 + (i % 3)
        after_buying = have + bought
        left = after_buying - gave
        rows.append({
            "question": f"{name} has {have} {thing}. {name} buys {bought} more and then gives {gave} to a friend. "
                        f"How many {thing} does {name} have now?",
            "answer": f"After buying, {name} has {have} + {bought} = <<{have}+{bought}={after_buying}>>{after_buying} {thing}.\n"
                      f"After giving some away, {name} has {after_buying} - {gave} = <<{after_buying}-{gave}={left}>>{left} {thing}.\n"
                      f"#### {left}",
        })
    return rows


def write_gsm8k() -> None:
    rows = gsm8k_rows()
    write("gsm8k", "train", rows[:7])  # 5-shot from train
    write("gsm8k", "test", rows[7:])


# --------------------------------------------------------------------------------------
# Leaderboard II

IFEVAL_KWARGS = (
    "num_highlights", "relation", "num_words", "num_placeholders", "prompt_to_repeat", "num_paragraphs",
    "nth_paragraph", "first_word", "num_bullets", "section_spliter", "num_sections", "capital_relation",
    "capital_frequency", "keywords", "keyword", "frequency", "num_sentences", "forbidden_words", "letter",
    "let_frequency", "let_relation", "postscript_marker", "end_phrase", "language",
)
"""The real dataset stores every instruction's kwargs with all of these keys (unused ones null)."""


def ifeval_kwargs(**values) -> dict:
    return {key: values.get(key) for key in IFEVAL_KWARGS}


IFEVAL = [
    (1001, "Write a short note to a neighbor asking them to water your plants while you are away. "
           "Do not use any commas in your response.",
     ["punctuation:no_comma"], [ifeval_kwargs()]),
    (1002, "Describe your favorite season in at least 40 words. Your entire response should be in English, "
           "and in all lowercase letters. No capital letters are allowed.",
     ["length_constraints:number_words", "change_case:english_lowercase"],
     [ifeval_kwargs(relation="at least", num_words=40), ifeval_kwargs()]),
    (1003, "List three tips for staying focused while studying. Your answer must contain exactly 3 bullet points. "
           "Use the markdown bullet points such as:\n* This is point 1.\n* This is point 2",
     ["detectable_format:number_bullet_lists"], [ifeval_kwargs(num_bullets=3)]),
    (1004, "Write a two-sentence story about a lighthouse keeper. Include the keywords storm and lantern in the "
           "response. Finish your response with this exact phrase: Is there anything else I can help with?",
     ["keywords:existence", "startend:end_checker"],
     [ifeval_kwargs(keywords=["storm", "lantern"]), ifeval_kwargs(end_phrase="Is there anything else I can help with?")]),
]


def write_ifeval() -> None:
    rows = [{"key": k, "prompt": p, "instruction_id_list": ids, "kwargs": kw} for k, p, ids, kw in IFEVAL]
    write("leaderboard_ifeval", "train", rows)


BBH = {  # subtask -> (input, target); targets are among the subtask's harness choices
    "boolean_expressions": [
        ("not ( True and False ) is", "True"),
        ("True and not True or False is", "False"),
        ("not not ( False or True ) is", "True"),
    ],
    "navigate": [
        ("If you follow these instructions, do you return to the starting point? Take 3 steps. Turn around. "
         "Take 3 steps.\nOptions:\n- Yes\n- No", "Yes"),
        ("If you follow these instructions, do you return to the starting point? Always face forward. "
         "Take 2 steps forward. Take 1 step backward.\nOptions:\n- Yes\n- No", "No"),
        ("If you follow these instructions, do you return to the starting point? Always face forward. "
         "Take 4 steps left. Take 4 steps right.\nOptions:\n- Yes\n- No", "Yes"),
    ],
    "sports_understanding": [
        ("Is the following sentence plausible? \"The goalkeeper caught the penalty kick in the World Cup final.\"", "yes"),
        ("Is the following sentence plausible? \"The tennis player hit a home run at Wimbledon.\"", "no"),
        ("Is the following sentence plausible? \"The point guard made a three-pointer at the buzzer.\"", "yes"),
    ],
    "web_of_lies": [
        ("Question: Alice tells the truth. Bob says Alice lies. Carol says Bob lies. Does Carol tell the truth?", "Yes"),
        ("Question: Dan lies. Eve says Dan tells the truth. Frank says Eve tells the truth. Does Frank tell the truth?", "No"),
        ("Question: Gina tells the truth. Hal says Gina tells the truth. Ivy says Hal lies. Does Ivy tell the truth?", "No"),
    ],
}


def write_bbh() -> None:
    for subtask, items in BBH.items():
        # Few-shot examples are fixed in the harness YAML; the dataset has only a test split.
        write(f"leaderboard_bbh_{subtask}", "test", [{"input": i, "target": t} for i, t in items])


MATH = {  # subtask -> (type, [(problem, solution with \boxed{answer})]); the last item is the train split
    "algebra": ("Algebra", [
        ("Solve for $x$: $2x + 7 = 19$.", "Subtracting 7 from both sides gives $2x = 12$, so $x = \\boxed{6}$."),
        ("What is the sum of the roots of $x^2 - 5x + 6 = 0$?",
         "The roots are $2$ and $3$, since $x^2 - 5x + 6 = (x-2)(x-3)$. Their sum is $\\boxed{5}$."),
        ("If $y = 3x - 2$ and $x = 4$, what is $y$?", "Substituting, $y = 3 \\cdot 4 - 2 = \\boxed{10}$."),
    ]),
    "prealgebra": ("Prealgebra", [
        ("What is $15\\%$ of $80$?", "$15\\%$ of $80$ is $0.15 \\cdot 80 = \\boxed{12}$."),
        ("Simplify $\\frac{18}{24}$.", "Dividing numerator and denominator by $6$ gives $\\boxed{\\frac{3}{4}}$."),
        ("What is $7 \\cdot 8 - 6$?", "We have $7 \\cdot 8 = 56$ and $56 - 6 = \\boxed{50}$."),
    ]),
    "number_theory": ("Number Theory", [
        ("What is the remainder when $100$ is divided by $7$?", "Since $7 \\cdot 14 = 98$, the remainder is $100 - 98 = \\boxed{2}$."),
        ("How many positive divisors does $12$ have?", "The divisors are $1, 2, 3, 4, 6, 12$, so there are $\\boxed{6}$."),
        ("What is the least common multiple of $4$ and $6$?", "The multiples of $6$ are $6, 12, \\ldots$ and $12$ is the first divisible by $4$, so the answer is $\\boxed{12}$."),
    ]),
}
MATH_TASK = {"algebra": "algebra", "prealgebra": "prealgebra", "number_theory": "num_theory"}


def write_math() -> None:
    for name, (kind, items) in MATH.items():
        # The hard subset keeps only Level 5 problems (the harness filters on `level`).
        rows = [{"problem": p, "level": "Level 5", "type": kind, "solution": s} for p, s in items]
        task = f"leaderboard_math_{MATH_TASK[name]}_hard"
        write(task, "test", rows[:2])
        write(task, "train", rows[2:])  # named by the harness YAML; few-shot examples are fixed in utils.py


GPQA = {  # subset -> (question, correct, three incorrect, domain, subdomain)
    "diamond": [
        ("A gas is compressed at constant temperature to half its volume. By what factor does its pressure change?",
         "It doubles", "It halves", "It stays the same", "It quadruples", "Physics", "Thermodynamics"),
        ("Which base pairs with adenine in DNA?", "Thymine", "Uracil", "Cytosine", "Guanine", "Biology", "Molecular Biology"),
    ],
    "extended": [
        ("What is the hybridization of the carbon atom in methane?", "sp3", "sp", "sp2", "dsp2", "Chemistry", "Organic Chemistry"),
        ("Which particle mediates the electromagnetic force?", "Photon", "Gluon", "W boson", "Graviton", "Physics", "High-energy particle physics"),
    ],
    "main": [
        ("In which organelle does the citric acid cycle take place in eukaryotic cells?", "Mitochondrial matrix", "Cytosol",
         "Rough endoplasmic reticulum", "Golgi apparatus", "Biology", "Molecular Biology"),
        ("What is the oxidation state of manganese in KMnO4?", "+7", "+2", "+4", "+6", "Chemistry", "Inorganic Chemistry"),
    ],
}


def write_gpqa() -> None:
    for subset, items in GPQA.items():
        rows = [
            {
                "Record ID": f"rec{subset}{i}",
                "Question": q,
                "Correct Answer": correct,
                "Incorrect Answer 1": wrong1,
                "Incorrect Answer 2": wrong2,
                "Incorrect Answer 3": wrong3,
                "Explanation": f"The correct answer is {correct}.",
                "High-level domain": domain,
                "Subdomain": subdomain,
            }
            for i, (q, correct, wrong1, wrong2, wrong3, domain, subdomain) in enumerate(items)
        ]
        write(f"leaderboard_gpqa_{subset}", "train", rows)  # the real dataset has only a train split


MUSR = {  # split -> (narrative, question, choices, answer index)
    "murder_mysteries": [
        ("In the quiet library, the head librarian was found dead beside the rare books room. Paul, the janitor, had "
         "keys to every door and was seen near the room that evening. Wendy, a visiting scholar, had argued with the "
         "librarian about access to the collection, but she was giving a public lecture across town all evening, "
         "with a hundred witnesses.",
         "Who is the most likely murderer?", ["Paul", "Wendy"], 0),
        ("At the harbor, a fisherman was poisoned with a rare plant extract. Rosa grows that plant in her greenhouse "
         "and owed the fisherman money. Tim, his rival, was at sea on a three-day trip when the poisoning happened.",
         "Who is the most likely murderer?", ["Tim", "Rosa"], 1),
    ],
    "object_placements": [
        ("Mia put her keys in the blue bowl by the door and went to shower. While she was away, Leo moved the keys "
         "to the kitchen drawer so the bowl could be washed. Mia did not see him do it.",
         "Which location is the most likely place Mia would look to find her keys?", ["blue bowl", "kitchen drawer"], 0),
        ("Sam left the scissors on the desk. Ana used them and put them in the craft box while Sam watched.",
         "Which location is the most likely place Sam would look to find the scissors?", ["desk", "craft box"], 1),
    ],
    "team_allocation": [
        ("A cafe manager must assign Jo and Raj to the kitchen and the counter. Jo is a trained chef but is shy with "
         "customers. Raj loves talking to people but burns toast. Each task needs exactly one person.",
         "Given the story, how would you uniquely allocate each person to make sure both tasks are accomplished "
         "efficiently?", ["Kitchen: Jo, Counter: Raj", "Kitchen: Raj, Counter: Jo"], 0),
        ("A school play needs one person on lights and one on costumes. Kim sews all her own clothes but is afraid of "
         "heights, and the lights are on a high catwalk. Omar climbs for fun and once ran the lights for a concert.",
         "Given the story, how would you uniquely allocate each person to make sure both tasks are accomplished "
         "efficiently?", ["Lights: Kim, Costumes: Omar", "Lights: Omar, Costumes: Kim"], 1),
    ],
}


def write_musr() -> None:
    for split, items in MUSR.items():
        rows = [
            # `choices` is the string form of a Python list in the real dataset (the harness literal_evals it).
            {"narrative": n, "question": q, "choices": repr(c), "answer_index": a, "answer_choice": c[a]}
            for n, q, c, a in items
        ]
        write(f"leaderboard_musr_{split}", split, rows)  # MuSR's split names are the subtask names


MMLU_PRO = [  # (question, options, answer index, category); the first 5 are the validation (few-shot) split
    ("What is the derivative of x^3?", ["3x^2", "x^2", "3x", "x^3/3", "2x^3"], 0, "math"),
    ("Which organelle produces most of a cell's ATP?", ["nucleus", "ribosome", "mitochondrion", "lysosome", "vacuole"], 2, "biology"),
    ("What is the SI unit of electric current?", ["volt", "ohm", "watt", "ampere", "coulomb"], 3, "physics"),
    ("Who wrote the play Romeo and Juliet?", ["Marlowe", "Shakespeare", "Jonson", "Milton", "Chaucer"], 1, "history"),
    ("What is the pH of pure water at 25 degrees Celsius?", ["5", "6", "7", "8", "9"], 2, "chemistry"),
    ("Which data structure serves elements in first-in, first-out order?", ["stack", "queue", "heap", "tree", "graph"], 1, "computer science"),
    ("In economics, what does GDP stand for?", ["gross domestic product", "general debt position", "government deficit percentage",
                                                 "gross dividend payout", "global demand projection"], 0, "economics"),
    ("What is 15 multiplied by 12?", ["150", "160", "170", "180", "190"], 3, "math"),
]


def write_mmlu_pro() -> None:
    rows = [
        {
            "question_id": i,
            "question": q,
            "options": options,
            "answer": LETTERS[a],
            "answer_index": a,
            "cot_content": "",
            "category": category,
            "src": "handwritten",
        }
        for i, (q, options, a, category) in enumerate(MMLU_PRO)
    ]
    write("leaderboard_mmlu_pro", "validation", rows[:5])  # 5-shot, first_n from validation
    write("leaderboard_mmlu_pro", "test", rows[5:])


# --------------------------------------------------------------------------------------
# The small-model suite (0-shot cloze): arc_easy, piqa, sciq, lambada_openai beside the
# arc_challenge, hellaswag and winogrande data above


EASY_SCIENCE = [  # ARC-Easy: (question, four choices, index of the correct one)
    ("Which sense organ do people use to see?", ["ears", "eyes", "nose", "tongue"], 1),
    ("What do bees collect from flowers to make honey?", ["nectar", "sand", "leaves", "bark"], 0),
    ("Which season is usually the coldest?", ["summer", "spring", "autumn", "winter"], 3),
    ("What do fish use to breathe under water?", ["lungs", "gills", "fins", "scales"], 1),
    ("Which object gives off its own light?", ["the Moon", "a mirror", "a candle flame", "a window"], 2),
    ("What do caterpillars turn into?", ["frogs", "butterflies", "spiders", "worms"], 1),
    ("Which of these is needed for a fire to burn?", ["oxygen", "water", "ice", "sand"], 0),
    ("Where does rain come from?", ["clouds", "rocks", "trees", "the ground"], 0),
    ("Which animal has feathers?", ["a dog", "a snake", "a robin", "a frog"], 2),
]


def write_arc_easy() -> None:
    write("arc_easy", "train", arc_rows(EASY_SCIENCE[:3], "Easy_train"))
    write("arc_easy", "validation", arc_rows(EASY_SCIENCE[3:5], "Easy_val"))
    write("arc_easy", "test", arc_rows(EASY_SCIENCE[5:], "Easy_test"))


PHYSICAL = [  # PIQA: (goal, solution 1, solution 2, index of the correct one)
    ("How do you keep ice cream from melting on a hot day?", "Keep it in a cooler with ice packs.",
     "Keep it in a paper bag in the sun.", 0),
    ("How can you open a tight jar lid?", "Put the jar in the freezer overnight.",
     "Run the lid under hot water, then twist it.", 1),
    ("How do you dry wet shoes quickly?", "Stuff them with newspaper and leave them in a warm room.",
     "Fill them with water and leave them outside.", 0),
    ("How do you stop a bleeding cut on your finger?", "Press a clean cloth firmly on the cut.",
     "Wave the finger in the air.", 0),
    ("How can you tell if an egg is still fresh?", "Spin it on the table to see if it wobbles.",
     "Put it in a bowl of water; a fresh egg sinks.", 1),
    ("How do you keep bread from going stale fast?", "Leave the bag open on the counter.",
     "Keep it sealed in a bag or bread box.", 1),
    ("How do you hang a picture straight on a wall?", "Use a level when you mark the nail holes.",
     "Hang it in the dark so nobody notices.", 0),
]


def write_piqa() -> None:
    rows = [{"goal": goal, "sol1": sol1, "sol2": sol2, "label": label} for goal, sol1, sol2, label in PHYSICAL]
    write("piqa", "train", rows[:3])
    write("piqa", "validation", rows[3:])


SCIQ = [  # (support paragraph, question, correct answer, three distractors)
    ("Mammals are warm-blooded animals that feed their young with milk.",
     "What do mammals feed their young with?", "milk", ["nectar", "seeds", "sap"]),
    ("Photosynthesis takes place in the chloroplasts of plant cells, where light energy is captured.",
     "Where in plant cells does photosynthesis take place?", "chloroplasts", ["nucleus", "cell wall", "vacuole"]),
    ("Water freezes into ice when it is cooled to zero degrees Celsius.",
     "At what temperature does water freeze?", "zero degrees Celsius", ["ten degrees Celsius", "fifty degrees Celsius",
                                                                        "one hundred degrees Celsius"]),
    ("The heart pumps blood through vessels called arteries and veins.",
     "Which organ pumps blood through the body?", "heart", ["lung", "kidney", "stomach"]),
    ("Earthquakes happen when rocks along a fault suddenly slip past each other.",
     "What happens along a fault during an earthquake?", "rocks slip past each other",
     ["rain falls", "ice melts", "plants grow"]),
    ("Metals such as copper conduct electricity well, which is why wires are made of them.",
     "Why are wires often made of copper?", "it conducts electricity well", ["it is transparent", "it floats",
                                                                            "it is soft like cotton"]),
    ("The Moon orbits the Earth about once every twenty-seven days.",
     "What does the Moon orbit?", "the Earth", ["the Sun only", "Mars", "Jupiter"]),
    ("Sound is a wave that needs a medium such as air or water to travel.",
     "What does sound need in order to travel?", "a medium", ["a vacuum", "sunlight", "a magnet"]),
]


def write_sciq() -> None:
    rows = [
        {"question": q, "distractor3": wrong[2], "distractor1": wrong[0], "distractor2": wrong[1],
         "correct_answer": answer, "support": support}
        for support, q, answer, wrong in SCIQ
    ]
    write("sciq", "train", rows[:2])
    write("sciq", "validation", rows[2:4])
    write("sciq", "test", rows[4:])


LAMBADA = [  # passages whose last word the model must predict from the context
    "Anna packed her bag, locked the door and walked to the station. The train was late, so she sat on a bench "
    "and read her book until the train",
    "Tom planted tomato seeds in the spring and watered them every evening. By the end of the summer his garden "
    "was full of red tomatoes",
    "The old dog slept by the fire all afternoon. When the children came home from school, it jumped up and "
    "wagged its tail",
    "Maria baked a cake for her brother's birthday. She put candles on top, and when he came in, everyone sang "
    "happy birthday to her brother",
    "The fisherman rowed out before sunrise and cast his net into the calm water. By noon his boat was heavy with "
    "fish",
]


def write_lambada() -> None:
    write("lambada_openai", "test", [{"text": text} for text in LAMBADA])


def main() -> None:
    for writer in (write_arc, write_hellaswag, write_mmlu, write_truthfulqa, write_winogrande, write_gsm8k,
                   write_ifeval, write_bbh, write_math, write_gpqa, write_musr, write_mmlu_pro,
                   write_arc_easy, write_piqa, write_sciq, write_lambada):
        writer()


if __name__ == "__main__":
    main()
