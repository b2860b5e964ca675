"""Generate the shipped demo corpus (classify_emulator/data/*.json) deterministically.

Why a generator: 50 videos with hundreds of timed segments are tedious and
error-prone to write by hand, and a fixed seed keeps the output byte-identical,
so the committed JSON can be regenerated and diffed. Run it after editing the
topics or the video table:

    .venv/bin/python -m classify_emulator.make_corpus            # rewrites classify_emulator/data/
    .venv/bin/python -m classify_emulator.make_corpus --check    # exit 1 if data/ is stale

Each video has a primary topic (most segments), an optional secondary topic
and generic "creator" filler (intros, outros), so that a class scores high on
the videos that are about it, lower on those that touch it, and near zero
elsewhere. A topic is a pool of subjects, actions, settings, speech and captions;
most videos draw from a *flavour* of their topic ("music/guitar-lesson",
"dance/wedding"), so that every shot stays on what the video's title says: a
guitar lesson's music shots are of a guitar lesson, not of an orchestra, and a
wedding's dancers are the couple and their guests. A secondary flavour is what
such a video plausibly touches (the dinner after the pasta is made, the strong
winds around a fire), never a sibling subject. Visual segments tile the whole
video; speech covers parts of it; on-screen text is sparse. Times are
frame-aligned at the video's fps, like upstream's (e.g. 169.63541666666669).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"
SEED = "classify-emulator-corpus-v1"


@dataclass(frozen=True)
class Topic:
    subjects: tuple[str, ...]
    actions: tuple[str, ...]
    settings: tuple[str, ...]
    speech: tuple[str, ...]
    screen: tuple[str, ...]


def T(subjects: str, actions: str, settings: str, speech: str, screen: str) -> Topic:
    """Topic from '|'-separated lists (keeps the table below readable)."""

    def split(s: str) -> tuple[str, ...]:
        return tuple(p.strip() for p in s.split("|"))

    return Topic(split(subjects), split(actions), split(settings), split(speech), split(screen))


TOPICS: dict[str, Topic] = {
    "soccer": T(
        "a soccer player|the striker|the goalkeeper|both soccer teams|the referee|"
        "the captain|the home team",
        "dribbles past two defenders|scores a goal from outside the box|"
        "dives to save a penalty kick|celebrates a goal with teammates|takes a corner kick|"
        "shows a yellow card after a hard tackle|passes the ball across the pitch|"
        "heads the ball toward the goal",
        "in a packed football stadium|on a muddy soccer pitch|under stadium floodlights|"
        "in front of the away fans|during the soccer match",
        "what a goal, the striker curls it into the top corner|"
        "the referee points to the penalty spot|that is a brilliant save by the goalkeeper|"
        "the home side are pressing for an equaliser|"
        "it is one nil at half time in this soccer match|the manager is furious on the touchline|"
        "a dangerous cross into the box|full time, and the fans celebrate a famous win",
        "LIVE 1-0|GOAL!|HALF TIME|MATCH HIGHLIGHTS|PENALTY|FULL TIME 2-1",
    ),
    "basketball": T(
        "a basketball player|the point guard|the center|the basketball team|a street baller",
        "dunks the ball over a defender|sinks a three point shot|dribbles between his legs|"
        "grabs an offensive rebound|attacks the hoop for a layup|blocks a shot at the rim",
        "in a crowded basketball arena|on an outdoor basketball court|during the final quarter|"
        "at a college basketball game",
        "he rises up, and that is a monster dunk|three pointer, good|"
        "timeout called with forty seconds left|what a block at the rim|"
        "the crowd is on its feet in this basketball game|the point guard sets up the play",
        "4TH QUARTER|3PT|SLAM DUNK CONTEST|FINAL SCORE|TOP 10 PLAYS",
    ),
    "tennis": T(
        "a tennis player|the defending champion|both tennis players|a young tennis prodigy",
        "hits a powerful forehand down the line|serves an ace|returns a backhand volley at the net|"
        "chases down a drop shot|celebrates winning match point",
        "on a grass tennis court|on a clay court|in a packed tennis stadium|"
        "at a tennis tournament final",
        "that is an ace, two hundred kilometers per hour|match point in this tennis final|"
        "what a rally, twenty shots|she breaks serve to lead the set|"
        "the crowd applauds a brilliant backhand",
        "MATCH POINT|SET 3|ACE|GRAND SLAM FINAL|SERVE SPEED 201 KM/H",
    ),
    "running": T(
        "thousands of runners|the lead marathon runner|a sprinter|an elite runner|"
        "volunteers at the marathon",
        "crosses the finish line with arms raised|runs through the city streets|"
        "grabs a water cup at an aid station|pulls ahead of the pack|warms up before the race",
        "along the marathon course|on an athletics track|at the marathon start line|"
        "past cheering spectators",
        "the leaders are passing the twenty kilometer mark|what a finish in this marathon|"
        "a new course record|the runners are battling the heat today|"
        "keep a steady pace and hydrate",
        "KM 21|FINISH|MARATHON LIVE|COURSE RECORD|SPLIT 1:02:14",
    ),
    "news": T(
        "a news anchor|a field reporter|a journalist|emergency crews|a police spokesperson|"
        "the newsroom team",
        "reports live from the scene|reads the latest headlines|interviews a witness|"
        "stands in front of a damaged building|holds a press conference|"
        "points to a map of the affected area",
        "in a television news studio|outside city hall|at the scene of the fire|"
        "in a busy newsroom|under flashing police lights",
        "good evening, we begin tonight with breaking news|"
        "we are getting reports of a major fire downtown|"
        "officials will hold a press conference within the hour|our reporter is live at the scene|"
        "authorities are urging residents to stay indoors|"
        "this is a developing story and we will bring you updates|back to you in the studio",
        "BREAKING NEWS|LIVE|DEVELOPING STORY|JUST IN|NEWS AT 6",
    ),
    "politics": T(
        "a candidate|voters|the president|election officials|a senator",
        "delivers a campaign speech|wait in line at a polling station|count ballots|"
        "debates on stage|waves to supporters",
        "at a campaign rally|in the parliament chamber|at a polling station|on election night",
        "polls close in one hour|the candidate is leading in early results|"
        "voter turnout is the highest in decades|the election is too close to call|"
        "the senator answered questions from reporters",
        "ELECTION NIGHT|RESULTS|VOTES COUNTED 62%|PROJECTED WINNER",
    ),
    "weather": T(
        "a meteorologist|storm clouds|heavy rain|a flooded road|strong winds",
        "points at the weather map|roll over the coastline|floods the streets|"
        "bend the palm trees|presents the weekly forecast",
        "in the weather studio|along the coast|in the city center|during the storm",
        "the storm will make landfall tonight|expect heavy rain and strong winds tomorrow|"
        "temperatures will drop below freezing|here is your seven day weather forecast|"
        "a flood warning is in effect",
        "STORM WARNING|FORECAST|FLOOD ALERT|7 DAY OUTLOOK|WIND 90 KM/H",
    ),
    "hiking": T(
        "a group of hikers|a solo hiker|climbers|campers",
        "climbs a steep mountain trail|reaches the summit at sunrise|sets up a tent by the lake|"
        "crosses a wooden bridge over a stream|sits by the campfire",
        "in the mountains|in a pine forest|above the clouds|on a rocky ridge",
        "we are almost at the summit|this trail is twelve kilometers round trip|"
        "pack enough water for the hike|the view from the top is unreal|"
        "we are camping by the lake tonight",
        "SUMMIT 3,100 M|TRAIL MAP|DAY HIKE|CAMPSITE",
    ),
    "space": T(
        "a rocket|astronauts|the mission control team|a satellite",
        "lifts off from the launch pad|float inside the space station|monitors the launch|"
        "orbits the earth",
        "at the launch site|in orbit|in mission control|against a starry sky",
        "t minus ten seconds|liftoff, we have liftoff|the booster has landed|"
        "the astronauts will spend six months in space",
        "LAUNCH|T-00:10|ORBIT|MISSION CONTROL",
    ),
    "dining": T(
        "a food critic|a waiter|diners|the bartender",
        "tastes a plate of handmade pasta|serves cocktails at the bar|reviews the tasting menu|"
        "brings dessert to the table",
        "in a cozy restaurant|at a rooftop bar|in a busy diner|at a street food stall",
        "this restaurant has been open for forty years|"
        "the cocktail menu at this bar is incredible|the service tonight was excellent|"
        "I would give this dish a nine out of ten",
        "RESTAURANT REVIEW|MENU|ROOFTOP BAR|RATING 9/10",
    ),
    "amusement": T(
        "a rollercoaster|families|excited kids|a carousel",
        "plunges down a steep drop|wait in line for the rides|scream on the water ride|"
        "spins under bright lights",
        "at a theme park|at an amusement park|at the fairground",
        "this is the tallest rollercoaster in the theme park|"
        "the line for this ride is two hours|we are going on it again",
        "THEME PARK|RIDE|MAX HEIGHT 60 M",
    ),
    "gaming": T(
        "a gamer|an esports team|a streamer|the player character",
        "plays a video game with a controller|competes in an esports final|"
        "reacts to a boss fight|explores an open world level",
        "in a gaming room with colorful lights|in an esports arena|on a live stream|"
        "in the game world",
        "we beat this boss on the first try|gg everyone, that was close|"
        "the esports final is tied one to one|this video game has an incredible open world",
        "GAME OVER|LEVEL 12|ESPORTS FINALS|LIVE STREAM",
    ),
    # Flavours: a video's shots, speech and captions stay on its own subject, as its
    # title says (a guitar lesson shows a guitar lesson, not an orchestra; a wedding's
    # dancers are the couple and their guests, not breakdancers teaching steps).
    "dance/street": T(
        "a crew of street dancers|two breakdancers|a hip hop dance team|a b-boy|"
        "a group of teenage dancers",
        "battles in a freestyle dance circle|freezes in a handstand at the end of the dance|"
        "performs a synchronized dance routine|practices spins and fast footwork|"
        "spins on his head|challenges the other crew",
        "on a city sidewalk|in front of a cheering crowd|at a dance competition|"
        "in an underground club",
        "this dance battle is getting intense|the judges want clean footwork and musicality|"
        "give it up for our dance crew|the final round of the dance competition starts now|"
        "keep your arms loose and dance to the beat",
        "DANCE BATTLE FINALS|ROUND 2|CREW VS CREW|BATTLE",
    ),
    "dance/lesson": T(
        "a dance instructor|a choreographer|a hip hop dance teacher|the students|"
        "a group of teenage dancers",
        "demonstrates the choreography step by step|teaches the basic dance steps slowly|"
        "leads the group through a warm up dance|rehearses a new dance routine|"
        "breaks the move down into counts",
        "in a mirrored dance studio|in a school gym|in a bright dance studio",
        "five six seven eight, from the top|watch my feet on this next dance step|"
        "okay, we slow the choreography down for beginners|"
        "today I am teaching you the dance from the music video|"
        "we run the whole dance routine one more time",
        "DANCE TUTORIAL|STEP 1: FOOTWORK|CHOREOGRAPHY BY MIA|LEARN THIS DANCE",
    ),
    "dance/ballet": T(
        "a ballet dancer|a ballerina|the corps de ballet|the ballet master|two ballet dancers|"
        "a group of ballet dancers",
        "practices pirouettes at the barre|rehearses the second act|stretches at the barre|"
        "waits in the wings before the curtain|lifts his partner in a pas de deux",
        "backstage|in a mirrored ballet studio|on a brightly lit stage|in the wings of the theater",
        "once more from the entrance, and point your feet|the premiere is on Friday|"
        "lift higher in the arabesque|places everyone, the curtain rises in ten minutes",
        "REHEARSAL|BACKSTAGE|SWAN LAKE|OPENING NIGHT",
    ),
    "dance/salsa": T(
        "a salsa couple|a salsa instructor|the dance class|pairs of dancers",
        "turn together in pairs|practices the basic salsa step|switch partners|"
        "spins to the music|follows the instructor's count",
        "in a dance studio|at a Latin dance school|in a community hall",
        "one two three, five six seven|switch partners and try it again|"
        "lead with your hand, not your arm|feel the rhythm of the salsa",
        "SALSA CLASS|BEGINNERS|BASIC STEP",
    ),
    "dance/wedding": T(
        "the bride and groom|the newlyweds|the wedding guests|the couple",
        "dance their first dance|slow dance to a love song|twirl under the lights|"
        "join the couple on the dance floor|end the dance with a dip",
        "at the wedding reception|on the dance floor|under string lights|in a decorated hall",
        "please welcome the newlyweds for their first dance|"
        "everyone, join them on the dance floor|they practiced this dance for weeks|"
        "I have never seen them so happy",
        "JUST MARRIED|FIRST DANCE|MR & MRS",
    ),
    "dance/social": T(
        "a creator|a teenager|two friends|a couple",
        "dances a viral dance trend|copies a trending dance move|dances around the kitchen|"
        "does a quick dance in front of the phone",
        "in front of a phone camera|in a small kitchen|in a bedroom|in the living room",
        "okay this dance trend is everywhere|try this dance with me|part two of the trend",
        "#DANCECHALLENGE|TREND|PART 2",
    ),
    "dance/crowd": T(
        "the festival crowd|fans in the front row|a crowd of people|two friends",
        "dance to the music|jump and dance to the beat|crowd surf toward the stage|"
        "dance with their hands in the air",
        "in front of the stage|in the mosh pit|at the festival",
        "everybody jump|this is the best night ever|I can't believe we're in the front row",
        "MAIN STAGE|FESTIVAL",
    ),
    "music/street": T(
        "a DJ|a beatboxer|the DJ",
        "mixes tracks on the turntables|drops a heavy beat|scratches a record",
        "next to the dance circle|behind the DJ booth",
        "DJ, turn it up|this beat is crazy|drop the beat",
        "DJ SET|BEATS BY DJ KAI",
    ),
    "music/classical": T(
        "an orchestra|a pianist|the conductor|a violinist|the string section",
        "performs a symphony|plays a piano melody|raises the baton|tunes the instruments|"
        "plays the slow movement",
        "in a concert hall|in the orchestra pit|on a grand stage",
        "the orchestra will now perform the symphony|please welcome the conductor|"
        "the second movement is slow and quiet|bravo",
        "LIVE IN CONCERT|SYMPHONY NO. 5|ENCORE",
    ),
    "music/rehearsal": T(
        "a rehearsal pianist|the pianist|the ballet master at the piano",
        "plays the accompaniment|counts the dancers in|plays the waltz from the second act",
        "in the ballet studio|in the corner of the studio",
        "and one, and two|from the top of the waltz, please|a little slower this time",
        "PIANO|ACT 2",
    ),
    "music/wedding": T(
        "a wedding band|a singer|a string quartet",
        "plays a love song|sings a slow ballad|plays the first notes of the song",
        "at the wedding reception|next to the dance floor",
        "this song is for the newlyweds|one more song before the cake",
        "LIVE BAND",
    ),
    "music/rock": T(
        "a rock band|the band's guitarist|the band's singer|the band's drummer|the band",
        "plays a guitar solo|sings into the microphone|performs the song live|"
        "plays a fast drum fill|jumps off the drum riser",
        "on a festival stage|under colorful stage lights|in front of a huge crowd",
        "this next song is from our new album|thank you so much, you have been amazing|"
        "the crowd is singing along to every word|put your hands up for the band",
        "LIVE IN CONCERT|NEW ALBUM OUT NOW|ENCORE|MAIN STAGE",
    ),
    "music/guitar-lesson": T(
        "a guitar teacher|a beginner guitarist|the teacher's hands|an acoustic guitar",
        "shows a G chord on the fretboard|strums a simple chord progression|tunes the guitar|"
        "switches slowly between C and D chords|explains how to hold the pick",
        "in a home music room|on a couch|in a small music studio",
        "here is the chord progression|place your finger on the third fret|"
        "strum slowly and keep the rhythm|practice these chords for ten minutes a day|"
        "if it buzzes, press a little harder",
        "GUITAR LESSON|CHORDS: G C D|BEGINNER|LESSON 1",
    ),
    "cooking/pasta": T(
        "a chef|a home cook|a grandmother in an apron|a food blogger",
        "kneads fresh dough for homemade pasta|rolls out the pasta dough|"
        "stirs a simmering tomato sauce in a pan|chops onions and garlic on a cutting board|"
        "drops the pasta into boiling water|plates the pasta with fresh basil|"
        "explains the recipe step by step while cooking",
        "in a bright home kitchen|in a rustic farmhouse kitchen|in a cooking studio",
        "the secret to good pasta is salting the water|"
        "let the sauce simmer for about ten minutes|this recipe only needs five ingredients|"
        "you can find the full recipe in the description|taste it, that is delicious",
        "EASY PASTA RECIPE|INGREDIENTS|STEP 2: SIMMER 10 MIN|RECIPE IN DESCRIPTION",
    ),
    "cooking/bread": T(
        "a baker|a home baker|a woman in an apron",
        "kneads the sourdough|feeds the sourdough starter|shapes the loaf|"
        "slides a tray of bread into the oven|slices a crusty loaf",
        "in a small bakery|in a bright home kitchen|in a rustic farmhouse kitchen",
        "let the dough rise overnight|the starter should be bubbly|"
        "preheat your oven to two hundred and fifty degrees|listen to that crust|"
        "you can find the full recipe in the description",
        "SOURDOUGH|BAKE 45 MIN|DAY 2: SHAPING|RECIPE IN DESCRIPTION",
    ),
    "cooking/grill": T(
        "a pitmaster|a home cook|a dad in an apron",
        "flips burgers on the grill|brushes sauce on the ribs|lights the charcoal|"
        "checks the meat with a thermometer|slices a smoked brisket",
        "at an outdoor grill|in the backyard|on the patio",
        "first we season the meat with salt and pepper|keep the lid closed to hold the heat|"
        "this is my favorite grilling trick|let the meat rest before you cut it",
        "BBQ TIPS|GRILL TEMP 120°C|TIP #3|RUB RECIPE",
    ),
    "cooking/utensils": T(
        "a reviewer|a home cook|a chef",
        "tests a chef knife on a tomato|compares three nonstick pans|"
        "whisks eggs with a balloon whisk|peels a carrot with a new peeler|"
        "chops onions on a cutting board with the new knife",
        "on a kitchen counter|in a bright home kitchen|in a test kitchen",
        "these kitchen utensils make cooking so much easier|"
        "this knife stays sharp after a month|the cheap peeler works just as well|"
        "is this worth the price|my top pick for home cooks",
        "UTENSIL REVIEW|WINNER|PROS & CONS|PRICE $25",
    ),
    "cooking/quick": T(
        "a creator|a student|a young cook",
        "boils a pot of noodles|fries an egg in a pan|tosses vegetables in a hot skillet|"
        "stirs the noodles with chopsticks",
        "in a small apartment kitchen|at the stove",
        "dinner in ten minutes|just add soy sauce and you are done",
        "DINNER IN 10 MIN|EASY NOODLES",
    ),
    "dining/home": T(
        "the family|friends|the guests|the neighbours",
        "share the meal at the table|taste the first bite|pass the plates around|"
        "raise their glasses",
        "at the dinner table|on the patio|in the dining room",
        "dinner is served|this is delicious|can I have seconds",
        "BON APPETIT|DINNER TIME",
    ),
    "dining/lisbon": T(
        "a waiter|the travel vlogger|a cafe owner",
        "serves custard tarts|grills sardines outside the restaurant|pours coffee at a tiny cafe",
        "in a tiled cafe|at a seafood restaurant",
        "these custard tarts are famous here|the sardines are so fresh",
        "PASTEL DE NATA|LUNCH: 12 EUR",
    ),
    "dining/street-food": T(
        "a vendor|diners|a food critic",
        "grills skewers|serves a bowl of soup|hands over a plate of tagine",
        "at a street food stall|at the night market",
        "this is the best tagine I have ever had|it costs only two euros",
        "STREET FOOD|5 DIRHAMS",
    ),
    "pets/puppy": T(
        "a golden retriever puppy|the puppy|the new owner and the puppy",
        "sniffs around the new home|chases a ball across the yard|falls asleep in its bed|"
        "learns to sit on command|meets the family",
        "in a cozy living room|in the backyard|in its new bed",
        "who is a good boy|the first day home for our puppy|"
        "he is so tired after all that exploring",
        "PUPPY'S FIRST DAY|DAY 1|WELCOME HOME",
    ),
    "pets/cat": T(
        "a grey cat|the cat|a kitten",
        "squeezes into a cardboard box|plays with a toy mouse|sleeps on the couch|"
        "knocks the box over|jumps out of the box",
        "in a cozy living room|on the kitchen floor",
        "our cat is obsessed with this box|she ignored the expensive bed|if it fits, she sits",
        "CAT VS BOX|CUTE PETS",
    ),
    "fitness/hiit": T(
        "a fitness trainer|a personal trainer|a woman in sportswear",
        "demonstrates squats and lunges|does push ups|does burpees|jumps rope|"
        "runs a high intensity interval workout|holds a plank|switches to the next exercise",
        "in a living room|at home on a mat",
        "engage your core and keep your back straight|"
        "thirty seconds of rest, then the next set|this workout burns a lot of calories|"
        "ten more reps, you can do it|no equipment needed",
        "HIIT WORKOUT|REST 30s|ROUND 3/5|FULL BODY WORKOUT",
    ),
    "fitness/yoga": T(
        "a yoga instructor|a woman on a yoga mat",
        "leads a yoga flow|stretches on a mat|holds downward dog|"
        "breathes slowly in a seated pose|moves through sun salutations",
        "on a mat outdoors|on a cliff at sunrise|on a wooden deck",
        "breathe in as you raise your arms|let your shoulders relax|"
        "hold this pose for five breaths|namaste",
        "YOGA FLOW|SUNRISE|BREATHE",
    ),
    "fitness/warm-up": T(
        "the dance class|the instructor|the students",
        "warm up with stretches|loosen their shoulders|march on the spot to the music",
        "in the dance studio|at the start of class",
        "let's warm up first|stretch your legs, we move a lot today",
        "WARM UP",
    ),
    "fitness/drills": T(
        "the kids|the coach|the youth team",
        "sprint between cones|do push ups on the grass|stretch after training|"
        "jog a lap around the pitch",
        "on the grass|next to the cones",
        "sprint to the cone and back|good effort, everyone|stretch your legs",
        "FITNESS DRILL|30 SEC",
    ),
    "nature/savanna": T(
        "a herd of elephants|a lion|a lioness|migrating wildebeest|a pride of lions|zebras",
        "crosses a river|hunts in the tall grass|stalks a herd of zebras|"
        "rests in the shade of an acacia tree|drinks from a water hole",
        "on the African savanna|in the Serengeti|at dawn in the wilderness",
        "the lions have been stalking the herd for hours|"
        "these animals travel hundreds of kilometers every year|"
        "only a few thousand of these animals remain in the wild|"
        "the dry season is hard on the herds",
        "WILDLIFE|SERENGETI|ENDANGERED SPECIES|NATURE DOCUMENTARY",
    ),
    "nature/eagles": T(
        "a bald eagle|a pair of bald eagles|a young eagle|salmon",
        "soars above the river|dives for a salmon|perches in a tall pine|builds a nest|"
        "gathers along the riverbank",
        "along a mountain river|in a misty forest|in a national park|at dawn in the wilderness",
        "the eagle spots its prey from above|thousands of eagles gather here every winter|"
        "the salmon run feeds the whole valley|the forest comes alive at dawn",
        "WILDLIFE|NATIONAL PARK|NATURE DOCUMENTARY|BALD EAGLE",
    ),
    "nature/sunrise": T(
        "the rising sun|morning mist|the calm sea|seabirds",
        "rises over the hills|drifts over the valley|glitters in the first light|"
        "glide along the cliffs",
        "at sunrise|above the coast",
        "listen to the birds waking up|look at that light",
        "SUNRISE",
    ),
    "nature/alpine": T(
        "a marmot|an ibex|alpine wildflowers|a mountain lake|a golden eagle",
        "whistles from a rock|climbs a steep cliff|sway in the wind|reflects the peaks|"
        "circles above the ridge",
        "in an alpine meadow|below the glacier|above the tree line",
        "look, a marmot right next to the trail|the meadows are full of color in July",
        "ALPINE FLORA|NATURE RESERVE",
    ),
    "nature/marine": T(
        "a school of bright fish|a sea turtle|a reef shark|a moray eel|an octopus",
        "hides in the coral|glides over the reef|swims past the camera|feeds on the reef",
        "in the reef|in clear turquoise water",
        "the reef is home to hundreds of fish species|"
        "coral reefs are under threat from warming seas",
        "MARINE LIFE|PROTECTED REEF",
    ),
    "ocean/reef": T(
        "a snorkeler|a diver|sea turtles|tropical fish",
        "explores a coral reef|floats above the reef|dives down to look at the coral|"
        "glide over the sandy bottom",
        "in clear turquoise water|near a small island|off a tropical beach",
        "the water here is so clear|we spotted a sea turtle on the reef|"
        "this snorkel spot is amazing",
        "SNORKEL SPOT|REEF|DEPTH 3 M",
    ),
    "ocean/coast": T(
        "a sailboat|the sea|swimmers|small waves",
        "sails along the coast|sparkles in the sun|swim in a quiet cove|"
        "lap against the rocky shore",
        "off the coast|in a hidden cove|along the cliffs",
        "the water is so blue here|let's jump in for a swim",
        "SWIM STOP|BLUE GROTTO",
    ),
    "travel/lisbon": T(
        "a travel vlogger|the vlogger and her friend|tourists",
        "walks through the Alfama district|rides the yellow tram|"
        "takes photos of the old town|looks out from a viewpoint|"
        "shows the view from the hotel balcony",
        "in Lisbon|in the old town|at a viewpoint over the river",
        "welcome to day three of our trip|our hotel has the most amazing view|"
        "here are my top travel tips for first timers|Lisbon is so hilly, wear good shoes",
        "DAY 3|LISBON|TRAVEL VLOG|BUDGET: $80/DAY",
    ),
    "travel/kyoto": T(
        "a tour guide|a group of tourists|travelers|a monk|a travel vlogger",
        "walks through the red torii gates|visits a wooden temple|"
        "walks along a quiet lane of old houses|rings a temple bell",
        "in Kyoto|at a Buddhist temple|in the Gion district",
        "the tour guide told us the history of this place|"
        "this temple is over a thousand years old|please take off your shoes inside",
        "KYOTO|WALKING TOUR|STOP 3: TEMPLE|TOP 5 THINGS TO DO",
    ),
    "travel/marrakech": T(
        "travelers|a backpacker|a couple of tourists|a tour guide|a travel vlogger",
        "walks through a colorful market|wanders the narrow lanes of the medina|"
        "bargains for a rug|tastes street food at a night market",
        "in Marrakech|in the medina|on the main square at night",
        "the market comes alive after sunset|always agree on the price first|"
        "here are my top travel tips for first timers",
        "MARRAKECH|NIGHT MARKET|BUDGET: $40/DAY",
    ),
    "travel/amalfi": T(
        "a couple of tourists|a boat captain|travelers",
        "boards a small boat in the harbor|passes cliffside villages|"
        "points at Positano from the boat|steers toward a hidden beach|lounges on the deck",
        "on the Amalfi coast|off the coast of Positano|in the harbor",
        "welcome aboard, we sail at ten|this is the best way to see the Amalfi coast|"
        "the villages look amazing from the water",
        "AMALFI COAST|BOAT TRIP|STOP 2: POSITANO",
    ),
    "travel/theme-park": T(
        "a family of tourists|travelers|a couple",
        "arrives at the park gates|checks into the park hotel|looks at the park map|"
        "buys tickets at the entrance",
        "at the park entrance|at the resort hotel",
        "we drove six hours to get here|this is our first time at this park|"
        "buy your tickets online to skip the line",
        "DAY 1|PARK TIPS",
    ),
    "travel/city-night": T(
        "friends|a travel vlogger|tourists",
        "walks through the old town at dusk|takes photos of the city skyline|"
        "rides a taxi to the next bar",
        "in the city center|at sunset|on a busy street at night",
        "this neighborhood is full of great places|here are my top picks in the city",
        "CITY GUIDE|TOP 5 SPOTS",
    ),
    "news/fire": T(
        "firefighters|a field reporter|emergency crews|a police spokesperson|a news anchor",
        "reports live from the scene|interviews a witness|"
        "stands in front of a damaged building|spray water on the flames|"
        "points to a map of the affected area",
        "at the scene of the fire|under flashing police lights|"
        "outside the burning warehouse|in a television news studio",
        "good evening, we begin tonight with breaking news|"
        "we are getting reports of a major fire downtown|our reporter is live at the scene|"
        "authorities are urging residents to stay indoors|"
        "this is a developing story and we will bring you updates|back to you in the studio",
        "BREAKING NEWS|LIVE|DEVELOPING STORY|JUST IN",
    ),
    "news/press": T(
        "the mayor|the club president|reporters|a spokesperson|journalists",
        "holds a press conference|answers questions from reporters|signs the stadium deal|"
        "speaks at the podium|take photos of the signing",
        "at city hall|in a packed press room|in front of the club crest",
        "thank you all for coming|the new stadium will open in three years|"
        "the city will pay a third of the cost|next question, please|"
        "we are proud to keep the club in this city",
        "PRESS CONFERENCE|LIVE|STADIUM DEAL|CITY HALL",
    ),
    "news/studio": T(
        "a news anchor|the anchors|an analyst|a correspondent",
        "reads the latest numbers|discusses the results|"
        "reports live from the campaign headquarters|points to the results map",
        "in a television news studio|in a busy newsroom|at the campaign headquarters",
        "good evening and welcome to our live coverage|we will bring you updates all night|"
        "back to you in the studio|let's go to our correspondent",
        "LIVE|JUST IN|NEWS AT 6",
    ),
    "news/sports": T(
        "a sports reporter|the commentators|a journalist|the pundits",
        "interviews the winning coach|reports from the press box|"
        "analyses the key moments in the studio|talks to fans outside",
        "in the broadcast studio|in the press box|in the commentary box",
        "welcome back to our live coverage|what a day for the team|"
        "we will hear from the coach after this|back to you in the studio",
        "LIVE|POST-MATCH|REACTION|SPORTS NEWS",
    ),
    "news/storm": T(
        "a field reporter|emergency crews|a police spokesperson|rescue workers",
        "reports live from the storm|evacuate residents from a flooded street|"
        "interviews a resident|stands on the flooded promenade",
        "at an evacuation shelter|on the flooded promenade|under flashing police lights",
        "authorities are urging residents to stay indoors|"
        "officials have ordered evacuations along the coast|our reporter is live at the scene",
        "BREAKING NEWS|LIVE|EVACUATION ORDER",
    ),
    "news/space": T(
        "a reporter|the commentators|spectators",
        "reports from the press site|watch the launch from the beach|"
        "explains the mission on a screen",
        "at the press site|on a beach near the launch site",
        "welcome to our live coverage of the launch|thousands of people came to watch",
        "LIVE|LAUNCH COVERAGE",
    ),
    "soccer/club": T(
        "the club's fans|the old stadium|the home team|a model of the new stadium",
        "cheer outside the stadium|is shown from the air|trains on the pitch|is unveiled on stage",
        "at the stadium|on the training pitch",
        "the fans have waited years for this|the old stadium holds only thirty thousand",
        "NEW STADIUM|CAPACITY 60,000",
    ),
    "soccer/youth": T(
        "kids|young football players|the coach|the youth team",
        "dribble a soccer ball around cones|practice passing in pairs|"
        "take shots at the goal|listen to the coach",
        "at a youth soccer training|on a muddy soccer pitch|on the training ground",
        "good touch, keep your head up|pass and move|"
        "one more time, nice and controlled|water break, everyone",
        "TRAINING DRILLS|DRILL 2: PASSING|U12",
    ),
    "weather/wind": T(
        "strong winds|a column of smoke|a meteorologist|dry air",
        "fan the flames|drifts over the downtown skyline|points at the wind forecast map",
        "over downtown|in the weather studio",
        "gusty winds are making the fire harder to fight|"
        "no rain is expected until the weekend|the smoke will drift east tonight",
        "WIND 50 KM/H|AIR QUALITY ALERT|FORECAST",
    ),
    "coding/python": T(
        "a software developer|a coding instructor|the code editor",
        "writes a Python function in a code editor|builds a REST endpoint|runs the unit tests|"
        "explains the JSON response|installs packages with pip",
        "at a desk with two monitors|on a screen recording|in a home office",
        "in this programming tutorial we build a web API|"
        "now we write a function that sorts the list|"
        "if you get this error, check your imports|now run the tests, and they pass|"
        "we deploy the code to the cloud at the end",
        "def main():|PYTHON TUTORIAL|pip install requests|STEP 3: DEPLOY",
    ),
    "coding/javascript": T(
        "a programmer|a streamer|the code editor",
        "refactors a JavaScript component|debugs an error in the browser console|"
        "adds a breakpoint|reads the stack trace|reloads the page",
        "at a desk with two monitors|on a live stream|on a screen recording",
        "okay chat, let's find this bug|undefined is not a function, classic|"
        "let me add a console log here|the bug was a missing await",
        "TypeError: undefined|npm run build|console.log",
    ),
    "gaming/stream": T(
        "a streamer|the chat|viewers",
        "reads messages from the chat|thanks a new subscriber|takes a short break",
        "on a live stream|in a room with colorful lights",
        "thanks for the follow|chat, should we keep going|we are live every Tuesday",
        "LIVE STREAM|NEW FOLLOWER",
    ),
    "technology/phone": T(
        "a tech reviewer|a new smartphone|the reviewer",
        "unboxes the new smartphone|compares the camera quality of two phones|"
        "peels the film off the screen|tests the screen brightness|"
        "holds the phone up to the camera",
        "on a clean white desk|in a tech studio|under studio lights",
        "this is the fastest processor in any phone right now|"
        "the battery easily lasts a full day|we unbox it and see what is inside|"
        "the camera is a huge upgrade over last year|is this phone worth the price",
        "UNBOXING|SPECS|REVIEW|PROS & CONS|CAMERA TEST",
    ),
    "technology/laptop": T(
        "a tech reviewer|a thin laptop|the laptop|the reviewer",
        "runs a battery benchmark|plays a video on loop to drain the battery|"
        "holds the laptop up to the camera|checks the battery percentage|opens the lid",
        "on a clean white desk|in a tech studio|next to a charger",
        "the battery easily lasts a full workday|"
        "after eight hours it still has thirty percent left|this chip is very efficient|"
        "in my full review, the display is the best I have tested",
        "BATTERY TEST|BENCHMARK|SPECS|12H 40M",
    ),
    "technology/kitchen": T(
        "a stand mixer|an electric kettle|a digital kitchen scale|a blender",
        "is shown from every angle|is switched on for a test|is unboxed on the counter",
        "on the kitchen counter|under studio lights",
        "the motor is surprisingly quiet|it charges over USB|the display is easy to read",
        "SPECS|UNBOXING|RATING 4/5",
    ),
    "technology/car": T(
        "the infotainment screen|the driver assistance system|the charging port|the car reviewer",
        "shows the navigation map|keeps the car in its lane|"
        "updates the software over the air|opens at the charging station",
        "inside the cabin|on the dashboard|at the charging station",
        "the software update added a new driving mode|the screen is huge and responsive|"
        "the app shows the charging status",
        "SOFTWARE 2.1|LANE ASSIST|CHARGING 80%",
    ),
    "cars/ev": T(
        "an electric SUV|the car reviewer|the SUV",
        "accelerates down the highway|takes the car for a test drive|"
        "charges at a fast charging station|climbs a mountain road|parks in the city",
        "on a mountain road|on the highway|at a charging station|in the city",
        "the electric range is about five hundred kilometers|"
        "zero to one hundred in under five seconds|time to take it for a test drive|"
        "the interior feels premium|it is very quiet on the highway",
        "TEST DRIVE|RANGE 500 KM|0-100 KM/H 4.8s|CHARGING 10-80% 30 MIN",
    ),
    "film/animation": T(
        "an animated fox|a cartoon fox|fireflies|a little owl",
        "runs through a colorful animated forest|chases fireflies|looks up at the moon|"
        "flies over a cartoon village",
        "in a hand drawn world|in an animated forest|under a starry sky",
        "every frame of the film was drawn by hand|the fox just wants a friend|"
        "a short film about friendship",
        "A SHORT FILM|DIRECTED BY ANA LIMA|THE END",
    ),
    "education/chemistry": T(
        "a chemistry teacher|students|a teacher|the class",
        "mixes chemicals in a beaker|writes equations on the blackboard|"
        "adds a drop of indicator|explains the periodic table|answers questions from students",
        "in a high school classroom|in a school chemistry lab",
        "put on your safety goggles before the experiment|"
        "who can tell me the answer to this equation|acids turn this indicator red|"
        "your homework is due next week|today we balance chemical equations",
        "CHEMISTRY 101|LECTURE 4|H2O|pH 7",
    ),
    "education/primary": T(
        "children|a primary school teacher|the class|a young student",
        "watch a baking soda volcano erupt|pour vinegar into a bottle|mix colored water|"
        "raise their hands",
        "in a primary school classroom|at the science table",
        "what do you think will happen|put on your safety goggles|wow, it's bubbling|"
        "science is all about asking questions",
        "PRIMARY SCHOOL SCIENCE|EXPERIMENT|BAKING SODA + VINEGAR",
    ),
    "filler": T(
        "the host|a presenter|the creator|the camera",
        "smiles and waves at the camera|introduces the video|talks directly to the camera|"
        "shows the channel logo|slowly pans across the room",
        "in a small room|outdoors|at the start of the video|at the end of the video",
        "hey everyone, welcome back to the channel|do not forget to like and subscribe|"
        "thanks for watching, see you next time|tell me in the comments what you think|"
        "before we start, a quick word from our sponsor",
        "SUBSCRIBE|@creator|THANKS FOR WATCHING|SPONSORED",
    ),
}


@dataclass(frozen=True)
class VideoSpec:
    index: str
    filename: str
    duration: float
    primary: str  # a key of TOPICS: a topic ("soccer") or one of its flavours ("dance/ballet")
    secondary: str | None
    share: float  # share of non-filler segments about the primary topic
    signature: str  # one hand-written visual description unique to this video


INDEXES: tuple[tuple[str, str], ...] = (
    ("social", "social-clips"),
    ("sports", "sports-and-news"),
    ("travel", "travel-and-nature"),
    ("tech", "tech-and-culture"),
)

# One video per two lines reads better than the formatter's nine.
# fmt: off
VIDEOS: tuple[VideoSpec, ...] = (
    VideoSpec("social", "street-dance-battle.mp4", 184.5, "dance/street", "music/street", 0.85,
              "two breakdancers battle in a dance circle while the crowd cheers"),
    VideoSpec("social", "hip-hop-dance-tutorial.mp4", 312.0, "dance/lesson", None, 0.9,
              "a dance instructor counts the beat and teaches the routine to beginners"),
    VideoSpec("social", "ballet-rehearsal-backstage.mp4", 241.2,
              "dance/ballet", "music/rehearsal", 0.85,
              "a ballerina spins a pirouette during rehearsal backstage"),
    VideoSpec("social", "salsa-dance-group-class.mp4", 205.8, "dance/salsa", "fitness/warm-up", 0.8,
              "a salsa dance group class turns together in pairs"),
    VideoSpec("social", "wedding-first-dance.mp4", 228.4, "dance/wedding", "music/wedding", 0.75,
              "the bride and groom dance their first dance under string lights"),
    VideoSpec("social", "pasta-recipe-tutorial.mp4", 428.0, "cooking/pasta", "dining/home", 0.85,
              "fresh tagliatelle is rolled out on a floured wooden board"),
    VideoSpec("social", "sourdough-bread-baking.mp4", 515.6, "cooking/bread", "dining/home", 0.85,
              "a baker scores a sourdough loaf before baking it in a hot oven"),
    VideoSpec("social", "backyard-bbq-grilling-tips.mp4", 367.3,
              "cooking/grill", "dining/home", 0.8,
              "ribs sizzle on a backyard barbecue grill while smoke rises"),
    VideoSpec("social", "kitchen-utensils-review.mp4", 298.1,
              "cooking/utensils", "technology/kitchen", 0.75,
              "a reviewer compares three chef knives and a set of kitchen utensils"),
    VideoSpec("social", "puppy-first-day-home.mp4", 142.0, "pets/puppy", None, 0.9,
              "a golden retriever puppy sniffs its new bed for the first time"),
    VideoSpec("social", "cat-vs-cardboard-box.mp4", 63.4, "pets/cat", None, 0.9,
              "a grey cat squeezes itself into a tiny cardboard box"),
    VideoSpec("social", "hiit-home-workout.mp4", 620.0, "fitness/hiit", None, 0.9,
              "a trainer counts down the last interval of a full body workout"),
    VideoSpec("social", "sunrise-yoga-flow.mp4", 900.0, "fitness/yoga", "nature/sunrise", 0.75,
              "a yoga instructor holds a tree pose on a cliff at sunrise"),
    VideoSpec("social", "tiktok-dance-and-dinner-compilation.mp4", 176.2,
              "dance/social", "cooking/quick", 0.55,
              "a creator dances in the kitchen while a pot of noodles boils"),
    VideoSpec("sports", "soccer-match-highlights-derby.mp4", 596.0, "soccer", None, 0.9,
              "the striker volleys the ball into the top corner of the goal"),
    VideoSpec("sports", "penalty-shootout-cup-final.mp4", 442.5, "soccer", "news/sports", 0.85,
              "the goalkeeper saves the final penalty and the soccer team storms the pitch"),
    VideoSpec("sports", "youth-soccer-training-drills.mp4", 380.9,
              "soccer/youth", "fitness/drills", 0.75,
              "kids dribble a soccer ball around orange cones during training"),
    VideoSpec("sports", "world-cup-final-full-broadcast.mp4", 11400.0, "soccer", "news/sports", 0.8,
              "captains lift the world cup trophy as confetti falls on the soccer pitch"),
    VideoSpec("sports", "basketball-top-10-dunks.mp4", 274.0, "basketball", None, 0.9,
              "a player takes off from the free throw line for a slam dunk"),
    VideoSpec("sports", "college-basketball-buzzer-beater.mp4", 193.7, "basketball", None, 0.85,
              "a half court basketball shot goes in as the buzzer sounds"),
    VideoSpec("sports", "tennis-grand-slam-final-recap.mp4", 655.0, "tennis", None, 0.9,
              "the champion falls to the grass after winning the tennis final"),
    VideoSpec("sports", "city-marathon-full-coverage.mp4", 12600.0, "running", "news/sports", 0.8,
              "a wave of marathon runners crosses the bridge at the start of the race"),
    VideoSpec("sports", "breaking-news-downtown-fire.mp4", 215.0, "news/fire", "weather/wind", 0.85,
              "firefighters spray water on a burning warehouse as a reporter speaks"),
    VideoSpec("sports", "evening-news-bulletin.mp4", 1680.0, "news", "politics", 0.6,
              "the news anchor introduces the top stories of the evening bulletin"),
    VideoSpec("sports", "election-night-live-coverage.mp4", 14400.0, "politics", "news/studio", 0.7,
              "a giant map of election results lights up behind the anchors"),
    VideoSpec("sports", "hurricane-landfall-weather-update.mp4", 410.2,
              "weather", "news/storm", 0.8,
              "palm trees bend in hurricane winds as waves flood the promenade"),
    VideoSpec("sports", "press-conference-stadium-deal.mp4", 960.0,
              "news/press", "soccer/club", 0.7,
              "the mayor and the club president sign the stadium deal at a press conference"),
    VideoSpec("travel", "lisbon-travel-vlog-day-3.mp4", 734.0,
              "travel/lisbon", "dining/lisbon", 0.8,
              "a yellow tram climbs a steep street in Lisbon"),
    VideoSpec("travel", "kyoto-temples-walking-tour.mp4", 1025.0, "travel/kyoto", None, 0.85,
              "a tour guide leads tourists through the red gates of a Kyoto shrine"),
    VideoSpec("travel", "marrakech-night-market-food.mp4", 611.0,
              "travel/marrakech", "dining/street-food", 0.7,
              "a vendor grills skewers at a smoky night market stall in Marrakech"),
    VideoSpec("travel", "amalfi-coast-boat-trip.mp4", 540.0, "travel/amalfi", "ocean/coast", 0.65,
              "a small boat passes colorful cliffside villages on the Amalfi coast"),
    VideoSpec("travel", "serengeti-lion-hunt-documentary.mp4", 2640.0, "nature/savanna", None, 0.9,
              "a lioness sprints after a zebra across the dry savanna"),
    VideoSpec("travel", "coral-reef-snorkeling.mp4", 372.0, "ocean/reef", "nature/marine", 0.8,
              "a snorkeler floats above a school of bright fish on the coral reef"),
    VideoSpec("travel", "alpine-summit-hike-sunrise.mp4", 1310.0, "hiking", "nature/alpine", 0.8,
              "hikers reach a snowy alpine summit as the sun rises"),
    VideoSpec("travel", "bald-eagles-river-migration.mp4", 1500.0, "nature/eagles", None, 0.9,
              "a bald eagle snatches a salmon from the river"),
    VideoSpec("travel", "theme-park-rollercoaster-pov.mp4", 188.0,
              "amusement", "travel/theme-park", 0.85,
              "a first person view from the front seat of a rollercoaster"),
    VideoSpec("travel", "rooftop-bars-and-restaurants-guide.mp4", 482.0,
              "dining", "travel/city-night", 0.8,
              "friends toast with cocktails on a rooftop bar at sunset"),
    VideoSpec("tech", "smartphone-unboxing-review.mp4", 845.0, "technology/phone", None, 0.9,
              "hands peel the protective film off a new smartphone screen"),
    VideoSpec("tech", "laptop-battery-benchmark.mp4", 690.0, "technology/laptop", None, 0.85,
              "a battery graph drops slowly on the laptop screen during the benchmark"),
    VideoSpec("tech", "python-api-programming-tutorial.mp4", 2310.0, "coding/python", None, 0.9,
              "a Python web API returns JSON in the browser"),
    VideoSpec("tech", "javascript-debugging-livestream.mp4", 3600.0,
              "coding/javascript", "gaming/stream", 0.8,
              "a red stack trace scrolls in the browser console"),
    VideoSpec("tech", "guitar-lesson-beginner-chords.mp4", 720.0, "music/guitar-lesson", None, 0.9,
              "a close up of fingers pressing a G chord on an acoustic guitar"),
    VideoSpec("tech", "festival-rock-concert-live.mp4", 2790.0, "music/rock", "dance/crowd", 0.8,
              "the crowd jumps and dances as fireworks go off above the festival stage"),
    VideoSpec("tech", "symphony-orchestra-concert.mp4", 3400.0, "music/classical", None, 0.9,
              "the conductor raises the baton and the orchestra begins the symphony"),
    VideoSpec("tech", "electric-suv-test-drive.mp4", 1080.0, "cars/ev", "technology/car", 0.8,
              "the electric SUV charges at a fast charging station"),
    VideoSpec("tech", "animated-short-film-fox.mp4", 480.0, "film/animation", None, 0.9,
              "an animated fox chases fireflies through a moonlit meadow"),
    VideoSpec("tech", "rocket-launch-livestream.mp4", 1860.0, "space", "news/space", 0.8,
              "the rocket booster lands upright on a drone ship"),
    VideoSpec("tech", "esports-final-highlights.mp4", 900.0, "gaming", None, 0.9,
              "an esports team lifts the trophy on a stage full of screens"),
    VideoSpec("tech", "high-school-chemistry-lecture.mp4", 2700.0, "education/chemistry", None, 0.9,
              "a teacher adds a drop of indicator and the liquid turns pink"),
    VideoSpec("tech", "primary-school-science-experiment.mp4", 540.0,
              "education/primary", None, 0.9,
              "children watch a baking soda volcano erupt in a primary school classroom"),
)
# fmt: on

FPS_CHOICES = (24.0, 25.0, 29.97002997002997, 30.0, 60.0)
RESOLUTIONS = ((1920, 1080), (1280, 720), (1080, 1920), (3840, 2160), (720, 1280))
BASE_TIME = datetime(2024, 5, 20, 9, 0, 0, tzinfo=UTC)

# The ids used in the vendor's classify guide and SDK examples, given to fitting
# videos so that those examples run verbatim against the emulator.
DOCUMENTED_IDS: dict[str, str] = {
    "social-clips": "6650701a27f0a43b740fd011",
    "street-dance-battle.mp4": "6656fa67d22b3a3c97befb0d",
    "hip-hop-dance-tutorial.mp4": "6656fa33d22b3a3c97befb0c",
    "pasta-recipe-tutorial.mp4": "6650712ad22b3a3c97bef51f",
    "tiktok-dance-and-dinner-compilation.mp4": "66507078d22b3a3c97bef51e",
    "salsa-dance-group-class.mp4": "64428d88456b2dab381e7022",
    "wedding-first-dance.mp4": "6444c376456b2dab381e702d",
}


def object_id(created: datetime, name: str) -> str:
    """A 24-hex id shaped like a MongoDB ObjectId: creation time first, then a hash."""
    if name in DOCUMENTED_IDS:
        return DOCUMENTED_IDS[name]
    head = f"{int(created.timestamp()):08x}"
    return head + hashlib.sha256(f"{SEED}:{name}".encode()).hexdigest()[:16]


def iso(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def frame_time(t: float, fps: float) -> float:
    return round(t * fps) / fps


def pick(rng: random.Random, options: tuple[str, ...], avoid: str | None = None) -> str:
    choice = rng.choice(options)
    if choice == avoid and len(options) > 1:
        choice = rng.choice([o for o in options if o != avoid])
    return choice


def visual_text(rng: random.Random, topic: Topic) -> str:
    setting = rng.choice(topic.settings)
    return f"{rng.choice(topic.subjects)} {rng.choice(topic.actions)} {setting}".strip()


def split_times(rng: random.Random, start: float, end: float, n: int) -> list[float]:
    """n+1 increasing cut points from start to end with uneven gaps."""
    weights = [rng.uniform(0.6, 1.6) for _ in range(n)]
    total = sum(weights)
    cuts = [start]
    acc = start
    for w in weights[:-1]:
        acc += (end - start) * w / total
        cuts.append(acc)
    cuts.append(end)
    return cuts


def topic_for(rng: random.Random, spec: VideoSpec, i: int, n: int) -> str:
    """Which topic segment i of n is about: filler at the edges, else primary/secondary."""
    if (i == 0 and rng.random() < 0.7) or (i == n - 1 and rng.random() < 0.6):
        return "filler"
    if rng.random() < 0.06:
        return "filler"
    if spec.secondary is None or rng.random() < spec.share:
        return spec.primary
    return spec.secondary


def make_video(spec: VideoSpec, index_created: datetime, n: int) -> dict[str, object]:
    rng = random.Random(f"{SEED}:{spec.filename}")
    fps = rng.choice(FPS_CHOICES)
    width, height = rng.choice(RESOLUTIONS)
    duration = frame_time(spec.duration, fps)
    created = index_created + timedelta(hours=6 + n * 7, minutes=rng.randrange(60))
    if spec.filename in DOCUMENTED_IDS:  # keep the id's embedded timestamp truthful
        created = datetime.fromtimestamp(int(DOCUMENTED_IDS[spec.filename][:8], 16), UTC)
    indexed = created + timedelta(seconds=int(duration * 0.3) + rng.randrange(30, 300))
    bitrate = rng.uniform(2.5e6, 8e6) * (width * height) / (1920 * 1080)

    n_visual = max(6, min(28, round(duration / 12)))
    cuts = split_times(rng, 0.0, duration, n_visual)
    visual: list[dict[str, object]] = []
    topics: list[str] = []
    signature_at = rng.randrange(1, n_visual - 1)
    previous = ""
    for i in range(n_visual):
        topic = topic_for(rng, spec, i, n_visual)
        text = visual_text(rng, TOPICS[topic])
        if i == signature_at:
            topic, text = spec.primary, spec.signature
        if text == previous:
            text = visual_text(rng, TOPICS[topic])
        previous = text
        topics.append(topic)
        visual.append(
            {"start": frame_time(cuts[i], fps), "end": frame_time(cuts[i + 1], fps), "text": text}
        )

    # Speech: about two thirds of the visual segments have a line, on the same topic,
    # starting a little after the shot starts (people do not talk over every cut).
    conversation: list[dict[str, object]] = []
    last_line = ""
    for i, seg in enumerate(visual):
        if rng.random() > 0.68:
            continue
        start = float(seg["start"])  # type: ignore[arg-type]
        end = float(seg["end"])  # type: ignore[arg-type]
        s = start + (end - start) * rng.uniform(0.0, 0.25)
        e = end - (end - start) * rng.uniform(0.0, 0.3)
        line = pick(rng, TOPICS[topics[i]].speech, avoid=last_line)
        last_line = line
        conversation.append({"start": frame_time(s, fps), "end": frame_time(e, fps), "text": line})

    # On-screen text: a few short captions, some on filler (SUBSCRIBE), most on topic.
    text_in_video: list[dict[str, object]] = []
    n_text = max(2, min(8, n_visual // 3))
    for i in sorted(rng.sample(range(n_visual), n_text)):
        seg = visual[i]
        start = float(seg["start"])  # type: ignore[arg-type]
        end = float(seg["end"])  # type: ignore[arg-type]
        length = min(end - start, rng.uniform(2.0, 6.0) if duration < 1200 else (end - start) / 2)
        s = start + rng.uniform(0.0, max(end - start - length, 0.0))
        caption = rng.choice(TOPICS[topics[i]].screen)
        text_in_video.append(
            {"start": frame_time(s, fps), "end": frame_time(s + length, fps), "text": caption}
        )

    return {
        "_id": object_id(created, spec.filename),
        "index": spec.index,
        "created_at": iso(created),
        "updated_at": iso(indexed),
        "indexed_at": iso(indexed),
        "metadata": {
            "engine_ids": ["marengo2.6", "pegasus1.1"],
            "filename": spec.filename,
            "video_title": spec.filename.rsplit(".", 1)[0],
            "duration": duration,
            "fps": fps,
            "width": width,
            "height": height,
            "size": int(duration * bitrate / 8),
        },
        "segments": {
            "visual": visual,
            "conversation": conversation,
            "text_in_video": text_in_video,
        },
    }


def build() -> dict[str, str]:
    """Return {file name: JSON text} for the corpus directory."""
    indexes: list[dict[str, object]] = []
    index_ids: dict[str, str] = {}
    index_created: dict[str, datetime] = {}
    for n, (key, name) in enumerate(INDEXES):
        created = BASE_TIME + timedelta(days=3 * n, hours=n)
        if name in DOCUMENTED_IDS:
            created = datetime.fromtimestamp(int(DOCUMENTED_IDS[name][:8], 16), UTC)
        index_ids[key] = object_id(created, name)
        index_created[key] = created
        indexes.append(
            {
                "_id": index_ids[key],
                "index_name": name,
                "engines": [
                    {
                        "engine_name": "marengo2.6",
                        "engine_options": ["visual", "conversation", "text_in_video", "logo"],
                    },
                    {"engine_name": "pegasus1.1", "engine_options": ["visual", "conversation"]},
                ],
                "addons": ["thumbnail"],
                "created_at": iso(created),
                "updated_at": iso(created + timedelta(days=2)),
                "expires_at": iso(created + timedelta(days=3650)),
            }
        )
    videos: list[dict[str, object]] = []
    for n, spec in enumerate(VIDEOS):
        video = make_video(spec, index_created[spec.index], n)
        video["index_id"] = index_ids[spec.index]
        del video["index"]
        videos.append(video)
    return {
        "indexes.json": json.dumps(indexes, indent=1, ensure_ascii=False) + "\n",
        "videos.json": json.dumps(videos, indent=1, ensure_ascii=False) + "\n",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if data/ differs")
    parser.add_argument("--out", type=Path, default=DATA_DIR)
    args = parser.parse_args(argv)
    files = build()
    if args.check:
        stale = [n for n, text in files.items() if (args.out / n).read_text() != text]
        for name in stale:
            print(f"stale: {args.out / name}", file=sys.stderr)
        return 1 if stale else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (args.out / name).write_text(text)
    print(f"wrote {len(files)} files to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
