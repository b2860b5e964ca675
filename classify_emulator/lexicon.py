"""A small hand-written thesaurus: the emulator's stand-in for semantic understanding.

Upstream embeds prompts and video segments with a neural model, so "Dance group"
matches "a crew of breakdancers". The emulator has no ML dependency; instead each
word listed here is replaced by a concept id before matching, so that words with
the same meaning meet. Entries are matched on their stem (see `textsim.stem`),
except those written with a leading "=", which match only that exact word (used
where stemming would merge unrelated meanings: "breaking" news is not "breaks
down" a dance step).

Keep each word in one concept only: a word in two concepts would match both.

`MODIFIERS` are concepts that qualify a topic rather than name one ("tutorial",
"group", "competition"...). They weigh less than topics, as the head topic of a
prompt dominates its meaning in an embedding: "Dance tutorial" is about dance
first, so a cooking tutorial must not score high for it.
"""

from __future__ import annotations


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


CONCEPTS: dict[str, tuple[str, ...]] = {
    "dance": _words(
        "dance dancer dancing choreography choreographer choreographed footwork breakdance "
        "breakdancer breakdancing ballet ballerina salsa tango waltz pirouette twerk moonwalk "
        "routine"
    ),
    "cooking": _words(
        "cook cooking chef recipe kitchen bake baking baker saute simmer simmering fry frying "
        "grill grilling bbq barbecue dough knead ingredient cuisine culinary oven stir chop "
        "whisk skillet =pan utensil ustensil spatula season preheat sourdough"
    ),
    "food": _words(
        "food dish meal pasta pizza noodle bread cake dessert sauce soup salad burger taco "
        "sushi tagliatelle delicious tasty snack dinner lunch breakfast"
    ),
    "tutorial": _words(
        "tutorial lesson learn teach teaching instructor guide beginner explain demonstrate "
        "walkthrough howto class"
    ),
    "competition": _words(
        "competition contest battle tournament championship compete competitor rival versus "
        "showdown cup final finals"
    ),
    "group": _words("group crew squad troupe ensemble together synchronized team teammate couple"),
    "soccer": _words(
        "soccer football futbol goalkeeper goalie striker penalty midfielder pitch kickoff "
        "goal equaliser equalizer offside"
    ),
    "basketball": _words("basketball nba dunk layup hoop rebound baller buzzer"),
    "tennis": _words("tennis racket racquet volley backhand forehand wimbledon ace rally"),
    "running": _words("marathon runner sprint sprinter jog jogging athletics pace"),
    "sport": _words(
        "sport athlete athletic stadium arena referee league player coach match scoreboard quarter"
    ),
    "news": _words(
        "=news newsroom anchor headline reporter journalist bulletin correspondent press "
        "report officials authorities witness"
    ),
    "urgent": _words("=breaking urgent alert developing emergency =live"),
    "politics": _words(
        "election vote voter ballot candidate senator parliament president minister campaign "
        "poll politics political turnout"
    ),
    "weather": _words(
        "weather storm hurricane rain forecast flood tornado snow temperature meteorologist "
        "wind landfall"
    ),
    "travel": _words(
        "travel traveler trip tourist tourism vacation holiday journey destination "
        "sightseeing itinerary backpack backpacker passport airport hotel resort vlog vlogger "
        "tour ferry attraction attractions"
    ),
    "city": _words("city downtown skyline urban metropolis town market"),
    "ocean": _words(
        "ocean sea beach coast coastline surf surfer surfing shore island reef coral snorkel "
        "snorkeler snorkeling tropical turquoise sailboat"
    ),
    "nature": _words(
        "nature wildlife forest jungle savanna wilderness landscape river lake canyon "
        "serengeti documentary wild"
    ),
    "animal": _words(
        "animal lion elephant bird eagle bear wolf wolves deer whale dolphin giraffe zebra "
        "predator prey herd fox wildebeest horse turtle"
    ),
    "pet": _words("pet dog puppy cat kitten hamster parrot vet retriever"),
    "hiking": _words(
        "hike hiking hiker trail summit trek trekking camping campfire tent climb climber "
        "mountain ridge alpine"
    ),
    "technology": _words(
        "technology tech gadget device smartphone phone laptop computer tablet processor chip "
        "battery specs earbuds smartwatch benchmark display"
    ),
    "review": _words("review reviewer rating verdict pros cons unboxing unbox"),
    "coding": _words(
        "code coding programming programmer developer software python javascript function "
        "debug debugging bug compiler algorithm api terminal editor refactor deploy"
    ),
    "music": _words(
        "music musician song singer singing sing band concert guitar guitarist piano pianist "
        "drum drummer melody chord album vocal orchestra symphony violin rap rapper beat dj "
        "turntable festival encore"
    ),
    "fitness": _words(
        "fitness workout exercise gym yoga pilates squat lunge pushup cardio stretch muscle "
        "trainer hiit reps calories core"
    ),
    "auto": _words(
        "car vehicle auto automobile sedan suv truck driving driver motorcycle highway drift "
        "showroom drive"
    ),
    "film": _words(
        "film movie cinema animation animated cartoon trailer director actor actress "
        "storyboard screenplay theater theatre"
    ),
    "gaming": _words(
        "gamer gaming videogame console esports controller playthrough speedrun streamer boss"
    ),
    "education": _words(
        "education educational school student classroom lecture professor university college "
        "curriculum exam homework pupil teacher primary secondary"
    ),
    "science": _words(
        "science scientist experiment laboratory lab physics chemistry biology chemical "
        "microscope beaker equation gravity mitosis"
    ),
    "space": _words("space rocket launch astronaut nasa satellite orbit planet liftoff booster"),
    "dining": _words("restaurant bar cafe diner bistro pub waiter bartender cocktail menu critic"),
    "amusement": _words("amusement rollercoaster coaster carousel fairground ride theme"),
    "crowd": _words("crowd audience spectator fan cheering applause supporter"),
}

MODIFIERS: frozenset[str] = frozenset(
    {"tutorial", "group", "competition", "review", "crowd", "urgent", "sport", "city"}
)
MODIFIER_WEIGHT = 0.4
