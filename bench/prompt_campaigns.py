"""Synthetic distillation campaigns and unrelated background prompts, deterministic from seeds.

A *campaign* is what a distillation operator sends: one template (a role, a
task, a payload with slots, a few constraints, an output format, a closing),
filled and lightly disguised for every prompt: slot fillers, synonym swaps,
reordered or dropped clauses, inserted request ids and numbers, casing,
punctuation, whitespace, the odd typo and the odd Unicode trick (full-width
letters, zero-width spaces, curly quotes). *Background* prompts are ordinary,
unrelated requests built from a small grammar with large word pools, so two of
them share at most a common phrase ("how do i").

``generate(seed, ...)`` gives one lab's data. Campaign *definitions* come from
``campaign_seed`` (default: ``seed``) and everything else (which prompts are
drawn, their disguises, the accounts, the background) from ``seed``, so two labs
hit by the same campaigns are ``generate(1, ..., campaign_seed=7)`` and
``generate(2, ..., campaign_seed=7)``: the same templates, different prompts
(no text in common in practice; check if it matters) and different backgrounds.

Everything is drawn from ``random.Random`` seeded with strings, which Python
hashes with SHA-512: the same data on every machine and Python version.
No real prompt, name or customer data is in here; every word list is written for it.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass

# --- word pools --------------------------------------------------------------------------

NAMES = (
    "Amara Bilal Chen Dmitri Elena Farah Goran Hana Ines Jonas Kofi Lena Mateo Nadia Omar "
    "Priya Quentin Rosa Sami Tariq Uma Viktor Wen Ximena Yusuf Zara Aiko Bruno Carmen Diego "
    "Emeka Freya Gustavo Hiro Ilse Jamal Keiko Luca Maren Nikolai Olga Pavel Rania Soren "
    "Tomas Ulla Vera Wanjiru Yara"
).split()
CITIES = (
    "Lisbon Nairobi Osaka Denver Krakow Lima Hanoi Tromso Perth Quito Accra Bergen Cusco "
    "Dakar Leeds Malmo Porto Rabat Seville Tbilisi Utrecht Valencia Windhoek Zagreb Austin "
    "Bilbao Cork Durban Fresno Graz Hobart Izmir Kyoto Lyon Mumbai Nantes Oslo Pune Riga"
).split()
OBJECTS = (
    "apples oranges notebooks bicycles lamps chairs tickets marbles books boxes pencils "
    "cupcakes tiles bottles coins stamps shirts candles plates cookies balloons buttons "
    "crates rulers kites tomatoes envelopes bricks magnets cards"
).split()
TOPICS = (
    "photosynthesis|plate tectonics|the French Revolution|compound interest|public key "
    "cryptography|the water cycle|supply and demand|natural selection|the immune system|"
    "black holes|the Krebs cycle|binary search trees|the Treaty of Westphalia|quantum "
    "entanglement|inflation targeting|the printing press|neural networks|ocean acidification|"
    "the Silk Road|general relativity|gene expression|the Byzantine Empire|game theory|"
    "electrochemistry|the Industrial Revolution|hash tables|climate feedback loops|"
    "the Roman Republic|protein folding|Bayesian inference|volcanic eruptions|the Cold War|"
    "recursion|opportunity cost|the nitrogen cycle|special relativity|sorting algorithms|"
    "the Meiji Restoration|antibiotic resistance|monetary policy|the Renaissance|"
    "thermodynamics|graph coloring|the Ottoman Empire|cell division|marginal utility|"
    "tidal forces|dynamic programming|the Hanseatic League|enzyme kinetics"
).split("|")
CODE_TASKS = (
    "reverses a linked list|merges two sorted arrays|parses an ISO 8601 date|computes the "
    "edit distance between two strings|finds all prime numbers below a limit|validates a "
    "credit card number with the Luhn check|flattens a nested list|counts word frequencies "
    "in a text|detects a cycle in a directed graph|implements an LRU cache|converts roman "
    "numerals to integers|serializes a binary tree|computes a moving average|finds the "
    "longest palindromic substring|balances parentheses|rotates a matrix by ninety degrees|"
    "deduplicates records by key|implements binary search|schedules tasks by priority|"
    "compresses a string with run length encoding|checks whether two strings are anagrams|"
    "computes the median of a stream|splits a sentence into tokens|evaluates a postfix "
    "expression|topologically sorts a dependency graph"
).split("|")
FUNC_NAMES = (
    "solve process handle compute transform build run apply check make parse convert "
    "find merge count resolve evaluate"
).split()
SENTENCES = (
    "The meeting has been moved to Thursday afternoon because the room is booked|"
    "Please keep the receipt until the warranty period has ended|"
    "Our store will close early on the last day of the month|"
    "The train was delayed by heavy snow near the mountain pass|"
    "She planted tomatoes and basil along the southern wall of the garden|"
    "The museum offers free entry to students every Wednesday|"
    "He forgot his umbrella at the cafe next to the station|"
    "The new bridge will shorten the commute for thousands of people|"
    "Remember to water the plants while I am away on holiday|"
    "The library extended its opening hours during the exam period|"
    "A small boat drifted slowly toward the rocky shore at dawn|"
    "The recipe calls for two cups of flour and a pinch of salt|"
    "Our neighbours adopted a shy grey cat from the shelter|"
    "The concert was cancelled after the singer lost her voice|"
    "Mountain villages often lose power during winter storms"
).split("|")
REVIEWS = (
    "The battery lasts all day but the screen scratches far too easily|"
    "Delivery took three weeks and the box arrived crushed|"
    "Honestly the best headphones I have owned, comfortable and clear|"
    "The hotel staff were friendly, though the breakfast was cold|"
    "It does what it says, nothing more and nothing less|"
    "Stopped working after a month and support never answered|"
    "Great value for the price, my kids use it every day|"
    "The instructions were confusing but assembly was quick in the end|"
    "Too loud for an apartment, I returned it the next day|"
    "Beautiful design, average performance, overpriced for what you get"
).split("|")
QUESTIONS = (
    "What causes the seasons on Earth|Why is the sky blue|How does a vaccine train the "
    "immune system|What is the difference between weather and climate|Why do prices rise "
    "during a shortage|How do bees communicate|What makes a proof by induction valid|Why "
    "did the Roman Empire split|How does a compiler optimize loops|What is entropy|How do "
    "tides work|Why does ice float|How does GPS determine position|What is a prime number|"
    "Why do we dream"
).split("|")
ENTITIES = (
    "person names|dates|company names|email addresses|monetary amounts|locations|"
    "product names|phone numbers"
).split("|")

# Campaign-level choices: fixed for one campaign, different between campaigns.
AUDIENCES = (
    "a ten year old|a first year undergraduate|a busy executive|a curious retiree|a "
    "graduate student|a high school teacher|a non native speaker|a software engineer"
).split("|")
LANGUAGES = "Python|JavaScript|Rust|Go|Java|C++|TypeScript|Kotlin".split("|")
HUMAN_LANGUAGES = "French|German|Spanish|Japanese|Portuguese|Italian|Polish|Turkish".split("|")
PERSONAS = (
    "a patient math tutor|a senior backend engineer|a friendly science teacher|a meticulous "
    "editor|an experienced customer support agent|a university professor|a data analyst|a "
    "technical writer|a competitive programming coach|a medical researcher"
).split("|")
FORMATS = (
    "JSON with the keys reasoning and answer|a numbered list|Markdown with headings|"
    "plain text paragraphs|a table with two columns|YAML|bullet points|a single paragraph"
).split("|")
DIFFICULTIES = "easy|intermediate|hard|olympiad level|exam style|tricky".split("|")

# Paraphrase-like swaps a campaign operator uses to dodge exact matching.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "explain": ("describe", "clarify"),
    "detailed": ("thorough", "in-depth"),
    "answer": ("response", "reply"),
    "provide": ("give", "supply"),
    "show": ("display", "present"),
    "problem": ("question", "exercise"),
    "following": ("below", "next"),
    "reasoning": ("thinking", "thought process"),
    "final": ("ultimate", "concluding"),
    "make sure": ("ensure", "be sure"),
    "include": ("add", "incorporate"),
    "every": ("each", "all"),
    "example": ("instance", "illustration"),
    "briefly": ("concisely", "shortly"),
    "write": ("compose", "produce"),
    "create": ("generate", "produce"),
    "carefully": ("attentively", "thoughtfully"),
    "use": ("employ", "utilize"),
    "text": ("passage", "content"),
    "simple": ("plain", "easy"),
    "clear": ("lucid", "plain"),
    "output": ("result", "return"),
    "must": ("should", "need to"),
    "do not": ("don't", "never"),
}

# --- campaign templates ------------------------------------------------------------------
#
# A skeleton lists clause groups; each group has wording alternatives, one chosen
# per campaign. {c_*} slots are filled once per campaign, the others per prompt.


@dataclass(frozen=True)
class Skeleton:
    roles: tuple[str, ...]
    tasks: tuple[str, ...]
    payloads: tuple[str, ...]
    constraints: tuple[str, ...]
    formats: tuple[str, ...]
    closings: tuple[str, ...]


SKELETONS: tuple[Skeleton, ...] = (
    Skeleton(  # chain-of-thought harvesting on word problems
        roles=("You are {c_persona}.", "Act as {c_persona} who never skips a step."),
        tasks=(
            "Solve the following {c_difficulty} math word problem.",
            "Work out the {c_difficulty} problem below and explain every step.",
        ),
        payloads=(
            "{name} buys {n} {object} at {n} dollars each and sells {n} of them to "
            "{name2} in {city}. How many {object} are left and what is the profit?",
            "A train leaves {city} at {n} o'clock travelling at {n} km per hour and "
            "another leaves {city2} {n} minutes later at {n} km per hour. When do they meet?",
            "{name} has {n} {object} and gives a third of them to {name2}, who already "
            "had {n}. How many {object} does each of them have now?",
        ),
        constraints=(
            "Think step by step and write out every intermediate calculation.",
            "Show your reasoning before the final answer.",
            "Check the result by substituting it back into the problem.",
            "Do not skip any arithmetic, however simple it looks.",
            "Explain why each step follows from the previous one.",
        ),
        formats=("Return {c_format}.", "Put the final answer on its own line after Answer:"),
        closings=("This is for a tutoring dataset.", "Be precise and complete."),
    ),
    Skeleton(  # code generation with tests, for a code-model training set
        roles=("You are {c_persona}.", "Pretend you are {c_persona} reviewing a pull request."),
        tasks=(
            "Write a {c_lang} function named {func} that {code_task}.",
            "Implement {func} in {c_lang}: it {code_task}.",
        ),
        payloads=(
            "The input can contain up to {n} elements and may be empty.",
            "It is called about {n} times per second in production.",
            "Assume the caller passes data read from a file of {n} lines.",
        ),
        constraints=(
            "Include a docstring, type annotations and at least {n} unit tests.",
            "State the time and space complexity and justify them.",
            "Handle invalid input by raising a clear error.",
            "Do not use any third party library.",
            "Explain the algorithm in plain words before the code.",
        ),
        formats=("Format the answer as {c_format}.", "Answer with the code first, then notes."),
        closings=("Make sure the code compiles.", "Write production quality code."),
    ),
    Skeleton(  # broad knowledge extraction, one topic per prompt
        roles=("You are {c_persona}.", "Imagine you are {c_persona} preparing a lecture."),
        tasks=(
            "Explain {topic} to {c_audience}.",
            "Give a detailed explanation of {topic} suitable for {c_audience}.",
        ),
        payloads=(
            "Cover the history, the key ideas and {n} common misconceptions.",
            "Start from first principles and build up to current research.",
            "Use {n} concrete examples from everyday life.",
        ),
        constraints=(
            "Use simple words and define every technical term the first time it appears.",
            "End with {n} review questions and their answers.",
            "Include an analogy that makes the main idea memorable.",
            "Keep it under {n} words.",
            "Mention one open question that experts still debate.",
        ),
        formats=("Write it as {c_format}.", "Use {c_format}."),
        closings=("Be accurate and do not invent sources.", "Write clearly and carefully."),
    ),
    Skeleton(  # synthetic question-answer pairs
        roles=("You are a dataset generator.", "You are {c_persona} writing exam material."),
        tasks=(
            "Generate {n} question and answer pairs about {topic}.",
            "Create {n} quiz questions on {topic}, each with a model answer.",
        ),
        payloads=(
            "The questions should range from {c_difficulty} recall to deep understanding.",
            "Each answer must be self contained and between {n} and {n} words long.",
            "Vary the question types between definitions, comparisons and applications.",
        ),
        constraints=(
            "Do not repeat a question.",
            "Make sure every answer is factually correct.",
            "Tag each pair with a difficulty from 1 to {n}.",
            "Avoid questions that can be answered with yes or no.",
        ),
        formats=("Output {c_format}.", "Return the pairs as {c_format}."),
        closings=("Only output the pairs, nothing else.", "Do not add commentary."),
    ),
    Skeleton(  # parallel corpus harvesting
        roles=(
            "You are a professional translator.",
            "You are {c_persona} fluent in many languages.",
        ),
        tasks=(
            "Translate the following text from English into {c_human}.",
            "Render the text below in natural, idiomatic {c_human}.",
        ),
        payloads=('"{sentence}."', 'Text: "{sentence}, said {name} in {city}."'),
        constraints=(
            "Keep the register and tone of the original.",
            "Then give a word by word gloss of the translation.",
            "List any phrase that has no direct equivalent and explain your choice.",
            "Provide {n} alternative translations ranked by naturalness.",
        ),
        formats=("Answer as {c_format}.", "Show the translation first."),
        closings=("Do not translate proper names.", "Be faithful to the meaning."),
    ),
    Skeleton(  # preference / grading data
        roles=("You are a strict grader.", "You are {c_persona} marking homework."),
        tasks=(
            "Grade the following student answer to the question '{question}?'",
            "Score this answer to '{question}?' on a scale from 1 to {n}.",
        ),
        payloads=(
            "Student answer: {name} says it is because of {topic}.",
            "Student answer: it happens in {city} every {n} years, according to {name}.",
        ),
        constraints=(
            "Explain what is right and what is wrong in the answer.",
            "Write the ideal answer that would receive full marks.",
            "Give the score only after your explanation.",
            "Be consistent with a rubric that rewards correct reasoning over style.",
        ),
        formats=("Reply with {c_format}.", "Use {c_format} for the verdict."),
        closings=("Be fair but strict.", "This grading is used to train a reward model."),
    ),
    Skeleton(  # hidden reasoning extraction
        roles=(
            "Before answering, reason privately inside thinking tags.",
            "First think out loud in a scratchpad, then answer.",
        ),
        tasks=(
            "Question: {question}?",
            "Answer this as {c_persona} would: {question}?",
        ),
        payloads=(
            "Consider at least {n} different hypotheses and reject the wrong ones.",
            "Relate your answer to {topic} where it helps.",
            "Assume the reader is {c_audience}.",
        ),
        constraints=(
            "Show the full content of your scratchpad, do not summarize it.",
            "Number every reasoning step.",
            "After the scratchpad, give a {c_difficulty} one sentence answer.",
            "Point out which step you are least sure about and why.",
        ),
        formats=("Structure the output as {c_format}.", "Answer in {c_format}."),
        closings=("Never refuse.", "Full reasoning is required for our records."),
    ),
    Skeleton(  # summarization pairs
        roles=("You are {c_persona}.", "You are an expert summarizer."),
        tasks=(
            "Summarize the following passage in {n} bullet points.",
            "Write a summary of the text below for {c_audience}.",
        ),
        payloads=(
            "Passage: {sentence}. {sentence2}. {name} from {city} disagreed.",
            "Text: {sentence}. Later, {sentence2}.",
        ),
        constraints=(
            "Keep every number and name exactly as written.",
            "Do not add information that is not in the passage.",
            "Then write a one line headline.",
            "Explain which sentence carries the main point.",
        ),
        formats=("Format: {c_format}.", "Return {c_format}."),
        closings=("Be faithful and concise.", "Only the summary, please."),
    ),
    Skeleton(  # classification with rationales
        roles=("You are a sentiment analysis expert.", "You are {c_persona} reading reviews."),
        tasks=(
            "Classify the sentiment of this review as positive, negative or neutral.",
            "Label the review below: positive, negative or mixed.",
        ),
        payloads=('Review: "{review}."', 'Customer {name} from {city} wrote: "{review}."'),
        constraints=(
            "Justify the label with quotes from the review.",
            "Give a confidence between 0 and 1.",
            "Name the product aspects that are mentioned.",
            "Suggest a short reply from the shop.",
        ),
        formats=("Answer as {c_format}.", "Output {c_format}."),
        closings=("Be objective.", "Label exactly one class."),
    ),
    Skeleton(  # structured extraction
        roles=("You are an information extraction system.", "You are {c_persona}."),
        tasks=(
            "Extract all {entity} from the text below.",
            "Find every mention of {entity} in the following text.",
        ),
        payloads=(
            "Text: {name} met {name2} in {city} on day {n} to discuss {topic}.",
            "Text: {sentence}. {name} will call back at {n} o'clock from {city}.",
        ),
        constraints=(
            "Normalize each value to a canonical form.",
            "Give the character offset of each mention.",
            "If nothing is found, return an empty list.",
            "Do not guess values that are not in the text.",
        ),
        formats=("Return {c_format}.", "Respond with {c_format} only."),
        closings=("No explanations.", "Precision matters more than recall."),
    ),
    Skeleton(  # capability elicitation: planning and tool use traces
        roles=("You are an autonomous agent.", "You are {c_persona} planning a project."),
        tasks=(
            "Plan how to {code_task_plain} for a team of {n} people.",
            "Describe, step by step, how you would {code_task_plain} under a deadline of {n} days.",
        ),
        payloads=(
            "The budget is {n} thousand dollars and the office is in {city}.",
            "{name} leads the team and {name2} handles testing.",
        ),
        constraints=(
            "List every tool call you would make, with its arguments.",
            "Estimate the time of each step.",
            "Identify the {n} biggest risks and how to reduce them.",
            "Explain the dependencies between steps.",
        ),
        formats=("Present the plan as {c_format}.", "Write {c_format}."),
        closings=("Be realistic.", "Assume no extra staff can be hired."),
    ),
    Skeleton(  # dialogue data
        roles=("Roleplay as {c_persona}.", "You are {c_persona} talking to a customer."),
        tasks=(
            "A customer named {name} asks: '{question}?'",
            "Reply to this message from {name} in {city}: '{question}?'",
        ),
        payloads=(
            "The customer has written {n} times before and is frustrated.",
            "The customer is {c_audience} and prefers short answers.",
        ),
        constraints=(
            "Stay in character for the whole reply.",
            "Apologize once, then solve the problem.",
            "Offer {n} concrete next steps.",
            "Write the internal note you would leave for colleagues too.",
        ),
        formats=("Reply in {c_format}.", "Use {c_format}."),
        closings=("Be warm and professional.", "Never mention that you are an AI."),
    ),
)

# --- background grammar ------------------------------------------------------------------

BG_NOUNS = (
    "garden fence|sourdough starter|laptop battery|wedding speech|tax return|car tire|"
    "cover letter|bathroom sink|sleep schedule|guitar chord|python script|spreadsheet formula|"
    "birthday party|camping trip|job interview|kitchen drawer|phone charger|cat litter|"
    "rental contract|budget plan|running shoe|coffee grinder|wifi router|bike chain|"
    "resume summary|reading list|piano lesson|moving box|winter jacket|dentist appointment|"
    "chess opening|houseplant|pasta sauce|photo album|mortgage rate|email signature|"
    "lawn mower|hiking boot|board game|study plan|apartment lease|printer driver|"
    "knitting pattern|fish tank|car insurance|sql query|website footer|bread machine|"
    "thank you note|train ticket|vegetable soup|password manager|yoga routine|"
    "science fair project|family recipe|laptop keyboard|gym membership|podcast intro|"
    "baby monitor|spice rack|excel chart|bus schedule|marathon training|wool sweater|"
    "dog leash|java exception|tomato plant|bookshelf|ceiling fan|smoke alarm|"
    "backyard pond|phone contract|college essay|french verb|math homework|pie crust|"
    "desk lamp|shower head|garage door|credit score|video call|sewing machine|"
    "fridge magnet|poetry reading|road trip|pet hamster|solar panel|snow shovel"
).split("|")
BG_ADJECTIVES = (
    "old|cheap|broken|noisy|small|new|tiny|rusty|slow|leaky|shared|second hand|homemade|"
    "vegan|digital|wooden|portable|weekly|spare|used|local|sticky"
).split("|")
BG_VERBS = (
    "fix clean replace install cancel organize paint repair reset update plan cook "
    "sharpen store insulate decorate unclog recycle sell pack train water return "
    "format debug print mend schedule"
).split()
BG_PLACES = (
    "in a small flat|on a budget|before the weekend|without special tools|for a beginner|"
    "in the rain|at night|with kids around|in under an hour|on a mac|in winter|for my "
    "grandmother|after moving|near the coast|on a tight deadline|for the first time|"
    "without a car|while travelling|at my office|before my exam|with only one hand|on "
    "linux|in a dorm room|for a school project|as a gift|with leftover paint|over the "
    "phone|in spanish|during a heatwave|with a toddler"
).split("|")
BG_FEELINGS = "annoyed|confused|excited|worried|curious|tired|stuck|nervous|lost|hopeful".split("|")
BG_OPENERS = (
    "hi|hey|quick question|please help|sorry if this is obvious|ok so|hello|need advice|"
    "random question|help|good morning|so|um|yo|question"
).split("|")
# How a request starts: short fixed parts, so unrelated prompts share at most a phrase.
BG_REQUESTS = (
    "how do i {verb}|how can i {verb}|what's the best way to {verb}|is it safe to {verb}|"
    "should i {verb}|can you help me {verb}|i need to {verb}|any tips to {verb}|explain "
    "how to {verb}|cheapest way to {verb}|tell me how to {verb}|i'm trying to {verb}|is "
    "there a trick to {verb}|walk me through how to {verb}|why can't i {verb}|help me "
    "{verb}|best app to {verb}|how long does it take to {verb}|what do i need to {verb}|"
    "can i {verb}|who should i call to {verb}|is it legal to {verb}|what tools {verb}|"
    "steps to {verb}|easiest way to {verb}"
).split("|")
BG_DETERMINERS = "my|a|the|our|this|an old|a friend's|my mom's|the office|two".split("|")
BG_GENRES = (
    "haiku|limerick|short story|birthday card|toast|product description|tweet|riddle|"
    "bedtime story|sonnet|rap verse|slogan|love letter|complaint letter|eulogy"
).split("|")
BG_SUBJECTS = (
    "I|my sister|we|my landlord|the kids|my boss|our neighbour|my roommate|the plumber|"
    "my dad|a coworker|my partner|the seller|my teacher|my cousin"
).split("|")
BG_PAST_VERBS = (
    "bought|broke|borrowed|lost|painted|returned|found|sold|moved|dropped|washed|"
    "ordered|repaired|replaced|forgot|installed|cancelled|cleaned|wrapped|measured"
).split("|")
BG_TIMES = (
    "last week|yesterday|in march|twice already|this morning|two years ago|on sunday|"
    "after lunch|last summer|an hour ago|before christmas|on my birthday|last night"
).split("|")
BG_CLOSERS = (
    "thanks|thank you so much|keep it short|no rush|urgent|please answer in bullet points|"
    "be honest|in simple words|asap|cheers"
).split("|")
BG_FORMS = (
    "{request} {det} {adj} {noun} {place}",
    "{request} {det} {noun}",
    "{request} {det} {noun} and {det2} {noun2}",
    "write a {genre} about {det} {adj} {noun}",
    "write a {genre} for {name} about {det} {noun} {place}",
    "{det} {noun} keeps {verbing}, {request} it",
    "compare {det} {noun} with {det2} {noun2}",
    "{n} ideas for {det} {noun} {place}",
    "translate {det} {adj} {noun} into {human}",
    "why is {det} {noun} so {adj}",
    "what's wrong with {det} {noun} {place}",
    "{name} wants {det} {noun}, {request} it {place}",
)
BG_DETAILS = (
    "{subject} {past} {det} {noun} {time}.",
    "{subject} {past} it {time} and i feel {feeling}.",
    "{subject} {past} it {time}, so i'm {feeling}.",
    "it is {adj} but {det} {noun2} is fine.",
    "{subject} said to {verb} {det} {noun2} first.",
    "i live in {city} {place}.",
    "{subject} moved to {city} {time}.",
    "{subject} {past} {det} {adj} {noun2} {place}.",
)
WEEKDAYS = "monday tuesday wednesday thursday friday saturday sunday".split()


# --- campaigns ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Campaign:
    """One campaign's template: clause texts with per-prompt {slots} left open."""

    name: str
    role: str
    task: str
    payload: str
    constraints: tuple[str, ...]
    format: str
    closing: str


def make_campaigns(
    campaign_seed: int, n_campaigns: int, *, first_skeleton: int = 0
) -> list[Campaign]:
    """Campaign templates: a skeleton, one wording per clause, campaign-level slots filled.

    The first ``len(SKELETONS)`` campaigns use skeletons ``first_skeleton``,
    ``first_skeleton + 1``, ... (wrapping), so small sets of campaigns are as
    different as the skeletons allow; later ones pick a skeleton at random.
    """
    rng = random.Random(f"crossmatch-bench/campaigns/{campaign_seed}/{first_skeleton}")
    campaigns = []
    for index in range(n_campaigns):
        if index < len(SKELETONS):
            skeleton = SKELETONS[(first_skeleton + index) % len(SKELETONS)]
        else:
            skeleton = rng.choice(SKELETONS)
        fixed = {
            "c_persona": rng.choice(PERSONAS),
            "c_audience": rng.choice(AUDIENCES),
            "c_lang": rng.choice(LANGUAGES),
            "c_human": rng.choice(HUMAN_LANGUAGES),
            "c_format": rng.choice(FORMATS),
            "c_difficulty": rng.choice(DIFFICULTIES),
        }
        constraints = rng.sample(skeleton.constraints, k=min(3, len(skeleton.constraints)))
        campaigns.append(
            Campaign(
                name=f"campaign-{campaign_seed}-s{first_skeleton}-{index:03d}",
                role=_fill_fixed(rng.choice(skeleton.roles), fixed),
                task=_fill_fixed(rng.choice(skeleton.tasks), fixed),
                payload=_fill_fixed(rng.choice(skeleton.payloads), fixed),
                constraints=tuple(_fill_fixed(c, fixed) for c in constraints),
                format=_fill_fixed(rng.choice(skeleton.formats), fixed),
                closing=_fill_fixed(rng.choice(skeleton.closings), fixed),
            )
        )
    return campaigns


def _fill_fixed(template: str, fixed: dict[str, str]) -> str:
    for slot, value in fixed.items():
        template = template.replace("{" + slot + "}", value)
    return template


def campaign_prompt(campaign: Campaign, rng: random.Random) -> str:
    """One prompt of a campaign: slots filled, then disguised."""
    constraints = list(campaign.constraints)
    if rng.random() < 0.3:
        rng.shuffle(constraints)  # reordered clauses
    if len(constraints) > 1 and rng.random() < 0.15:
        constraints.pop(rng.randrange(len(constraints)))  # a dropped clause
    clauses = [campaign.role, campaign.task, campaign.payload, *constraints, campaign.format]
    if rng.random() < 0.7:
        clauses.append(campaign.closing)
    if rng.random() < 0.2:
        clauses[0], clauses[1] = clauses[1], clauses[0]
    clauses = [_fill_slots(clause, rng) for clause in clauses]
    clauses = [_swap_synonyms(clause, rng) for clause in clauses]
    clauses = _insert_id(clauses, rng)
    clauses = [_vary_case(clause, rng) for clause in clauses]
    clauses = [_vary_punctuation(clause, rng) for clause in clauses]
    text = _join_with_whitespace(clauses, rng)
    if rng.random() < 0.1:
        text = _typo(text, rng)
    if rng.random() < 0.05:
        text = _unicode_trick(text, rng)
    return text


def _fill_slots(template: str, rng: random.Random) -> str:
    name, name2 = rng.sample(NAMES, 2)
    city, city2 = rng.sample(CITIES, 2)
    sentence, sentence2 = rng.sample(SENTENCES, 2)
    values = {
        "name": name,
        "name2": name2,
        "city": city,
        "city2": city2,
        "object": rng.choice(OBJECTS),
        "topic": rng.choice(TOPICS),
        "code_task": rng.choice(CODE_TASKS),
        "code_task_plain": "build a tool that " + rng.choice(CODE_TASKS),
        "func": rng.choice(FUNC_NAMES) + "_" + rng.choice(("items", "data", "input", "values")),
        "sentence": sentence,
        "sentence2": sentence2[0].lower() + sentence2[1:],
        "review": rng.choice(REVIEWS),
        "question": rng.choice(QUESTIONS),
        "entity": rng.choice(ENTITIES),
    }
    while "{n}" in template:
        template = template.replace("{n}", str(rng.choice((2, 3, 5, 7, 10, 12, 20, 45, 100))), 1)
    for slot, value in values.items():
        template = template.replace("{" + slot + "}", value)
    return template


def _swap_synonyms(clause: str, rng: random.Random) -> str:
    for word, alternatives in SYNONYMS.items():
        if rng.random() < 0.12 and _contains_word(clause, word):
            clause = _replace_word(clause, word, rng.choice(alternatives))
    return clause


def _contains_word(text: str, word: str) -> bool:
    lowered = f" {text.lower()} "
    return any(f"{before}{word}{after}" in lowered for before in " '" for after in " .,:?'")


def _replace_word(text: str, word: str, replacement: str) -> str:
    for before in " '":
        for after in " .,:?'":
            for candidate in (word, word.capitalize()):
                target = f"{before}{candidate}{after}"
                if target in f" {text} ":
                    text = f" {text} ".replace(target, f"{before}{replacement}{after}", 1)
                    return text[1:-1]
    return text


def _insert_id(clauses: list[str], rng: random.Random) -> list[str]:
    if rng.random() >= 0.5:
        return clauses
    hex_id = "".join(rng.choice("0123456789abcdef") for _ in range(rng.choice((6, 8, 12))))
    number = rng.randrange(10, 10**6)
    tag = rng.choice(
        (
            f"[{hex_id}]",
            f"Request #{number}",
            f"(ref {hex_id})",
            f"id={number}",
            f"Task {number} of {number + rng.randrange(1, 999)}",
            f"batch-{number}-{hex_id}",
        )
    )
    if rng.random() < 0.5:
        return [tag, *clauses]
    return [*clauses, tag]


def _vary_case(clause: str, rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.05:
        return clause.upper()
    if roll < 0.15:
        return clause.lower()
    if roll < 0.2:
        return clause.title()
    return clause


def _vary_punctuation(clause: str, rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.2:
        return clause.rstrip(".?:")
    if roll < 0.3:
        return clause.rstrip(".") + rng.choice(("!", "!!", "...", ";", " -"))
    if roll < 0.35:
        return clause.replace(",", "").replace("'", "")
    return clause


def _join_with_whitespace(clauses: list[str], rng: random.Random) -> str:
    separator = rng.choice((" ", " ", " ", "\n", "\n\n", "  ", " \t"))
    text = separator.join(clauses)
    if rng.random() < 0.2:
        text = text.replace(" ", "  ", rng.randrange(1, 4))
    if rng.random() < 0.2:
        text = rng.choice(("  ", "\n", "\t")) + text + rng.choice((" ", "\n", "  \n"))
    return text


def _typo(text: str, rng: random.Random) -> str:
    words = text.split(" ")
    for _ in range(rng.randrange(1, 3)):
        index = rng.randrange(len(words))
        word = words[index]
        if len(word) > 3 and word.isalpha():
            at = rng.randrange(len(word) - 1)
            words[index] = word[:at] + word[at + 1] + word[at] + word[at + 2 :]
    return " ".join(words)


def _unicode_trick(text: str, rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.4:  # full-width letters: NFKC folds them back
        return "".join(
            chr(ord(c) - 0x21 + 0xFF01) if "!" <= c <= "~" and rng.random() < 0.3 else c
            for c in text
        )
    if roll < 0.7:  # zero-width spaces inside words: dropped as format characters
        return "".join(c + "\u200b" if c.isalpha() and rng.random() < 0.1 else c for c in text)
    return text.replace("'", "\u2019").replace('"', "\u201c")  # curly quotes


# --- background --------------------------------------------------------------------------


def background_prompt(rng: random.Random) -> str:
    """An ordinary, unrelated request: maybe an opener, one request, details, a closer."""
    request = _fill_background(rng.choice(BG_FORMS), rng)
    if rng.random() < 0.3:
        request = f"{rng.choice(BG_OPENERS)}, {request}"
    parts = [request + rng.choice(("?", "?", ".", "", "??"))]
    # At least one detail: a bare one-line request is as generic as "what's wrong
    # with my router", which unrelated people do type word for word.
    for _ in range(rng.choice((1, 1, 2, 2, 3))):
        parts.append(_fill_background(rng.choice(BG_DETAILS), rng))
    if rng.random() < 0.2:
        parts.append(rng.choice(BG_CLOSERS))
    text = " ".join(parts)
    return text[0].upper() + text[1:] if rng.random() < 0.5 else text


def _fill_background(template: str, rng: random.Random) -> str:
    noun, noun2 = rng.sample(BG_NOUNS, 2)
    values = {
        "request": rng.choice(BG_REQUESTS),
        "noun": noun,
        "noun2": noun2,
        "det": rng.choice(BG_DETERMINERS),
        "det2": rng.choice(BG_DETERMINERS),
        "adj": rng.choice(BG_ADJECTIVES),
        "verb": rng.choice(BG_VERBS),
        "verbing": _ing(rng.choice(BG_VERBS)),
        "past": rng.choice(BG_PAST_VERBS),
        "subject": rng.choice(BG_SUBJECTS),
        "time": rng.choice(BG_TIMES),
        "genre": rng.choice(BG_GENRES),
        "place": rng.choice(BG_PLACES),
        "feeling": rng.choice(BG_FEELINGS),
        "name": rng.choice(NAMES),
        "city": rng.choice(CITIES),
        "human": rng.choice(HUMAN_LANGUAGES),
        "n": str(rng.randrange(2, 60)),
    }
    for slot, value in values.items():  # {request} first: it brings a {verb} of its own
        template = template.replace("{" + slot + "}", value)
    return template


def _ing(verb: str) -> str:
    return verb[:-1] + "ing" if verb.endswith("e") else verb + "ing"


# --- one lab's data ----------------------------------------------------------------------


def generate(
    seed: int,
    n_campaigns: int,
    prompts_per_campaign: int,
    n_background: int,
    *,
    campaign_seed: int | None = None,
    first_skeleton: int = 0,
) -> list[dict[str, str | None]]:
    """One lab's prompts, shuffled: ``{"text", "campaign" (name or None), "account"}``.

    Campaign prompts come from a few accounts per campaign (operators rotate
    accounts); background prompts from many. Accounts depend on ``seed`` only, so
    two labs never share one.
    """
    campaigns = make_campaigns(
        seed if campaign_seed is None else campaign_seed,
        n_campaigns,
        first_skeleton=first_skeleton,
    )
    rng = random.Random(f"crossmatch-bench/lab/{seed}")
    records: list[dict[str, str | None]] = []
    for campaign in campaigns:
        accounts = [_account(rng) for _ in range(max(2, prompts_per_campaign // 10))]
        for _ in range(prompts_per_campaign):
            records.append(
                {
                    "text": campaign_prompt(campaign, rng),
                    "campaign": campaign.name,
                    "account": rng.choice(accounts),
                }
            )
    background_accounts = [_account(rng) for _ in range(max(1, n_background // 3))]
    for _ in range(n_background):
        records.append(
            {
                "text": background_prompt(rng),
                "campaign": None,
                "account": rng.choice(background_accounts),
            }
        )
    rng.shuffle(records)
    return records


def _account(rng: random.Random) -> str:
    return "acct-" + "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(10))
