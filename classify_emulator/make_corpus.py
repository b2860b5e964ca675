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
elsewhere. Visual segments tile the whole video; speech covers parts of it;
on-screen text is sparse. Times are frame-aligned at the video's fps, like
upstream's (e.g. 169.63541666666669).
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
    "dance": T(
        "a crew of street dancers|a ballet dancer|a salsa couple|a dance instructor|"
        "a group of teenage dancers|two breakdancers|a hip hop dance team|a choreographer",
        "performs a synchronized dance routine|practices spins and fast footwork|"
        "demonstrates the choreography step by step|battles in a freestyle dance circle|"
        "rehearses a new dance routine|leads the group through a warm up dance|"
        "freezes in a handstand at the end of the dance|teaches the basic dance steps slowly",
        "in a mirrored dance studio|on a city sidewalk|on a brightly lit stage|"
        "in front of a cheering crowd|in a school gym|at a dance competition",
        "five six seven eight, from the top|watch my feet on this next dance step|"
        "okay, we slow the choreography down for beginners|this dance battle is getting intense|"
        "the judges want clean footwork and musicality|keep your arms loose and dance to the beat|"
        "give it up for our dance crew|today I am teaching you the dance from the music video|"
        "we run the whole dance routine one more time|"
        "the final round of the dance competition starts now",
        "DANCE TUTORIAL|STEP 1: FOOTWORK|DANCE BATTLE FINALS|CHOREOGRAPHY BY MIA|"
        "LEARN THIS DANCE|ROUND 2",
    ),
    "cooking": T(
        "a chef|a home cook|a pastry chef|two cooking show hosts|a grandmother in an apron|"
        "a line cook|a food blogger",
        "chops onions and garlic on a cutting board|stirs a simmering tomato sauce in a pan|"
        "kneads fresh dough for homemade pasta|explains the recipe step by step while cooking|"
        "whisks eggs and sugar in a mixing bowl|tosses vegetables in a hot skillet|"
        "plates the finished dish with fresh herbs|slides a tray of bread into the oven|"
        "tastes the soup and adds a pinch of salt",
        "in a bright home kitchen|in a busy restaurant kitchen|at an outdoor grill|"
        "in a cooking studio|in a rustic farmhouse kitchen",
        "first we season the chicken with salt and pepper|this recipe only needs five ingredients|"
        "let the sauce simmer for about ten minutes|"
        "the secret to good pasta is salting the water|now fold the flour in gently|"
        "preheat your oven to two hundred degrees|this is my favorite cooking trick|"
        "taste it, that is delicious|you can find the full recipe in the description|"
        "these kitchen utensils make cooking so much easier",
        "EASY PASTA RECIPE|INGREDIENTS|STEP 2: SIMMER 10 MIN|COOKING TIP|"
        "RECIPE IN DESCRIPTION|PREP TIME 15 MIN",
    ),
    "soccer": T(
        "a soccer player|the striker|the goalkeeper|both soccer teams|the referee|"
        "a young football player|the home team",
        "dribbles past two defenders|scores a goal from outside the box|"
        "dives to save a penalty kick|celebrates a goal with teammates|takes a corner kick|"
        "shows a yellow card after a hard tackle|passes the ball across the pitch|"
        "heads the ball toward the goal",
        "in a packed football stadium|on a muddy soccer pitch|under stadium floodlights|"
        "at a youth soccer match|during the soccer match",
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
        "grabs a water cup at an aid station|pulls ahead of the pack|stretches before the race",
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
    "travel": T(
        "a travel vlogger|a couple of tourists|a backpacker|a tour guide|travelers",
        "walks through a colorful market|takes photos of the old town|"
        "checks into a boutique hotel|rides a train through the countryside|"
        "boards a ferry to the island|tastes street food at a night market|"
        "shows the view from the hotel balcony",
        "in Lisbon|in Kyoto|in Marrakech|on the Amalfi coast|in Mexico City|in the Swiss Alps",
        "welcome to day three of our trip|"
        "this is one of the best travel destinations in Europe|"
        "our hotel has the most amazing view|here are my top travel tips for first timers|"
        "we just landed and we are heading to the city|"
        "the tour guide told us the history of this place",
        "DAY 3|TRAVEL GUIDE|TOP 5 THINGS TO DO|BUDGET: $80/DAY|TRAVEL VLOG",
    ),
    "ocean": T(
        "surfers|a snorkeler|sea turtles|big waves|a sailboat",
        "ride the waves at sunset|explores a coral reef|glide over the sandy bottom|"
        "crash against the rocky shore|sails along the coast",
        "on a tropical beach|in clear turquoise water|off the coast|near a small island",
        "the water here is so clear|this beach is absolutely stunning|the surf is huge today|"
        "we spotted a sea turtle on the reef",
        "SNORKEL SPOT|BEACH DAY|SURF REPORT|ISLAND HOPPING",
    ),
    "nature": T(
        "a herd of elephants|a lion|a bald eagle|a family of bears|wild horses|"
        "a pack of wolves|a red fox|migrating wildebeest",
        "crosses a river|hunts in the tall grass|soars above the canyon|drinks from a lake|"
        "roams through the forest|rests in the shade of an acacia tree",
        "on the African savanna|in a misty forest|in a national park|"
        "at dawn in the wilderness|along a mountain river",
        "the lions have been stalking the herd for hours|"
        "these animals travel hundreds of kilometers every year|the forest comes alive at dawn|"
        "only a few thousand of these animals remain in the wild|"
        "the eagle spots its prey from above",
        "WILDLIFE|SERENGETI|ENDANGERED SPECIES|NATIONAL PARK|NATURE DOCUMENTARY",
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
    "technology": T(
        "a tech reviewer|a new smartphone|a thin laptop|a pair of wireless earbuds|"
        "a smartwatch|the reviewer",
        "unboxes the new smartphone|compares the camera quality of two phones|"
        "runs a battery benchmark|is shown from every angle|holds the laptop up to the camera|"
        "tests the screen brightness of the gadget",
        "on a clean white desk|in a tech studio|under studio lights|next to a stack of devices",
        "the battery easily lasts a full day|this is the fastest processor in any phone right now|"
        "we unbox it and see what is inside|the camera is a huge upgrade over last year|"
        "is this gadget worth the price|in my full review, the display is the best I have tested",
        "UNBOXING|SPECS|BATTERY TEST|REVIEW|PROS & CONS",
    ),
    "coding": T(
        "a software developer|a programmer|a coding instructor|the code editor",
        "writes a Python function in a code editor|debugs an error in the terminal|"
        "explains the algorithm on a whiteboard|runs the unit tests|"
        "refactors a JavaScript component|draws a diagram of the API",
        "at a desk with two monitors|in a coding bootcamp classroom|on a screen recording|"
        "in a home office",
        "in this programming tutorial we build a web API|"
        "now we write a function that sorts the list|"
        "if you get this error, check your imports|now run the tests, and they pass|"
        "this algorithm runs in linear time|we deploy the code to the cloud at the end",
        "def main():|PYTHON TUTORIAL|ERROR: IndexError|npm run build|STEP 3: DEPLOY",
    ),
    "music": T(
        "a rock band|a guitarist|a pianist|a singer|an orchestra|a DJ|a drummer",
        "plays a guitar solo|sings into the microphone|performs the song live|"
        "plays a piano melody|performs a symphony|mixes tracks on the turntables|"
        "plays a fast drum fill",
        "on a festival stage|in a recording studio|in a concert hall|at a small jazz club|"
        "under colorful stage lights",
        "this next song is from our new album|thank you so much, you have been amazing|"
        "here is the chord progression|play the melody slowly with your right hand|"
        "the crowd is singing along to every word|put your hands up for the band",
        "LIVE IN CONCERT|NEW ALBUM OUT NOW|GUITAR LESSON|CHORDS: G C D|ENCORE",
    ),
    "fitness": T(
        "a fitness trainer|a yoga instructor|a group of athletes|a woman in sportswear|"
        "a personal trainer",
        "demonstrates squats and lunges|leads a yoga flow|does push ups|stretches on a mat|"
        "lifts weights|runs a high intensity interval workout",
        "in a modern gym|in a sunny yoga studio|in a living room|in a park",
        "engage your core and keep your back straight|thirty seconds of rest, then the next set|"
        "breathe in as you raise your arms|this workout burns a lot of calories|"
        "ten more reps, you can do it",
        "HIIT WORKOUT|REST 30s|YOGA FLOW|ROUND 3/5|FULL BODY WORKOUT",
    ),
    "pets": T(
        "a golden retriever puppy|a kitten|two cats|a scruffy dog|a parrot",
        "chases a ball across the yard|plays with a toy mouse|sleeps on the couch|"
        "learns to sit on command|splashes in a bathtub",
        "in a cozy living room|in the backyard|at the dog park|at the vet clinic",
        "who is a good boy|she learned this trick in just one week|"
        "our cat is obsessed with this box|the first day home for our puppy|"
        "he really does not like bath time",
        "PUPPY'S FIRST DAY|CUTE PETS|TRICK TRAINING|CAT VS BOX",
    ),
    "cars": T(
        "a sports car|an electric SUV|a vintage car|a race car|the car reviewer",
        "accelerates down the highway|drifts around a corner|is shown in the showroom|"
        "pulls into a pit stop|takes the car for a test drive",
        "on a mountain road|on a race track|at an auto show|in a garage",
        "zero to one hundred in under four seconds|"
        "the electric range is about five hundred kilometers|this engine sounds incredible|"
        "time to take it for a test drive|the interior feels premium",
        "0-100 KM/H 3.8s|TEST DRIVE|AUTO SHOW|LAP TIME 1:42",
    ),
    "film": T(
        "an animated character|the film director|two actors|a cartoon fox|the animation team",
        "runs through a colorful animated forest|rehearses a scene on set|sketches storyboards|"
        "talks about the making of the movie|flies over a cartoon city",
        "on a film set|in an animation studio|in a movie theater|in a hand drawn world",
        "the animation took four years to finish|this scene was shot in a single take|"
        "the trailer drops next week|every frame of the film was drawn by hand|"
        "the director explains the story",
        "OFFICIAL TRAILER|IN THEATERS NOW|BEHIND THE SCENES|DIRECTED BY ANA LIMA",
    ),
    "education": T(
        "a professor|students|a scientist|a teacher|a lab technician",
        "explains a physics experiment|mixes chemicals in a beaker|"
        "writes equations on the blackboard|looks through a microscope|"
        "answers questions from students",
        "in a university lecture hall|in a school classroom|in a science laboratory|"
        "in a primary school classroom",
        "today the lecture is about gravity|put on your safety goggles before the experiment|"
        "who can tell me the answer to this equation|"
        "cells divide through a process called mitosis|your homework is due next week",
        "LECTURE 4|CHEMISTRY 101|E = mc2|PRIMARY SCHOOL SCIENCE|EXPERIMENT",
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
    primary: str
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
    VideoSpec("social", "street-dance-battle.mp4", 184.5, "dance", "music", 0.85,
              "two breakdancers battle in a dance circle while the crowd cheers"),
    VideoSpec("social", "hip-hop-dance-tutorial.mp4", 312.0, "dance", None, 0.9,
              "a dance instructor counts the beat and teaches the routine to beginners"),
    VideoSpec("social", "ballet-rehearsal-backstage.mp4", 241.2, "dance", "music", 0.85,
              "a ballerina spins a pirouette during rehearsal backstage"),
    VideoSpec("social", "salsa-dance-group-class.mp4", 205.8, "dance", "fitness", 0.8,
              "a salsa dance group class turns together in pairs"),
    VideoSpec("social", "wedding-first-dance.mp4", 228.4, "dance", "music", 0.75,
              "the bride and groom dance their first dance under string lights"),
    VideoSpec("social", "pasta-recipe-tutorial.mp4", 428.0, "cooking", "dining", 0.85,
              "fresh tagliatelle is rolled out on a floured wooden board"),
    VideoSpec("social", "sourdough-bread-baking.mp4", 515.6, "cooking", "dining", 0.85,
              "a baker scores a sourdough loaf before baking it in a hot oven"),
    VideoSpec("social", "backyard-bbq-grilling-tips.mp4", 367.3, "cooking", "dining", 0.8,
              "ribs sizzle on a backyard barbecue grill while smoke rises"),
    VideoSpec("social", "kitchen-utensils-review.mp4", 298.1, "cooking", "technology", 0.75,
              "a reviewer compares three chef knives and a set of kitchen utensils"),
    VideoSpec("social", "puppy-first-day-home.mp4", 142.0, "pets", None, 0.9,
              "a golden retriever puppy sniffs its new bed for the first time"),
    VideoSpec("social", "cat-vs-cardboard-box.mp4", 63.4, "pets", None, 0.9,
              "a grey cat squeezes itself into a tiny cardboard box"),
    VideoSpec("social", "hiit-home-workout.mp4", 620.0, "fitness", None, 0.9,
              "a trainer counts down the last interval of a full body workout"),
    VideoSpec("social", "sunrise-yoga-flow.mp4", 900.0, "fitness", "nature", 0.75,
              "a yoga instructor holds a tree pose on a cliff at sunrise"),
    VideoSpec("social", "tiktok-dance-and-dinner-compilation.mp4", 176.2, "dance", "cooking", 0.55,
              "a creator dances in the kitchen while a pot of noodles boils"),
    VideoSpec("sports", "soccer-match-highlights-derby.mp4", 596.0, "soccer", None, 0.9,
              "the striker volleys the ball into the top corner of the goal"),
    VideoSpec("sports", "penalty-shootout-cup-final.mp4", 442.5, "soccer", "news", 0.85,
              "the goalkeeper saves the final penalty and the soccer team storms the pitch"),
    VideoSpec("sports", "youth-soccer-training-drills.mp4", 380.9, "soccer", "fitness", 0.75,
              "kids dribble a soccer ball around orange cones during training"),
    VideoSpec("sports", "world-cup-final-full-broadcast.mp4", 11400.0, "soccer", "news", 0.8,
              "captains lift the world cup trophy as confetti falls on the soccer pitch"),
    VideoSpec("sports", "basketball-top-10-dunks.mp4", 274.0, "basketball", None, 0.9,
              "a player takes off from the free throw line for a slam dunk"),
    VideoSpec("sports", "college-basketball-buzzer-beater.mp4", 193.7, "basketball", None, 0.85,
              "a half court basketball shot goes in as the buzzer sounds"),
    VideoSpec("sports", "tennis-grand-slam-final-recap.mp4", 655.0, "tennis", None, 0.9,
              "the champion falls to the grass after winning the tennis final"),
    VideoSpec("sports", "city-marathon-full-coverage.mp4", 12600.0, "running", "news", 0.8,
              "a wave of marathon runners crosses the bridge at the start of the race"),
    VideoSpec("sports", "breaking-news-downtown-fire.mp4", 215.0, "news", "weather", 0.85,
              "firefighters spray water on a burning warehouse as a reporter speaks"),
    VideoSpec("sports", "evening-news-bulletin.mp4", 1680.0, "news", "politics", 0.6,
              "the news anchor introduces the top stories of the evening bulletin"),
    VideoSpec("sports", "election-night-live-coverage.mp4", 14400.0, "politics", "news", 0.7,
              "a giant map of election results lights up behind the anchors"),
    VideoSpec("sports", "hurricane-landfall-weather-update.mp4", 410.2, "weather", "news", 0.8,
              "palm trees bend in hurricane winds as waves flood the promenade"),
    VideoSpec("sports", "press-conference-stadium-deal.mp4", 960.0, "news", "soccer", 0.7,
              "the mayor and the club president sign the stadium deal at a press conference"),
    VideoSpec("travel", "lisbon-travel-vlog-day-3.mp4", 734.0, "travel", "dining", 0.8,
              "a yellow tram climbs a steep street in Lisbon"),
    VideoSpec("travel", "kyoto-temples-walking-tour.mp4", 1025.0, "travel", None, 0.85,
              "a tour guide leads tourists through the red gates of a Kyoto shrine"),
    VideoSpec("travel", "marrakech-night-market-food.mp4", 611.0, "travel", "dining", 0.7,
              "a vendor grills skewers at a smoky night market stall in Marrakech"),
    VideoSpec("travel", "amalfi-coast-boat-trip.mp4", 540.0, "travel", "ocean", 0.65,
              "a small boat passes colorful cliffside villages on the Amalfi coast"),
    VideoSpec("travel", "serengeti-lion-hunt-documentary.mp4", 2640.0, "nature", None, 0.9,
              "a lioness sprints after a zebra across the dry savanna"),
    VideoSpec("travel", "coral-reef-snorkeling.mp4", 372.0, "ocean", "nature", 0.8,
              "a snorkeler floats above a school of bright fish on the coral reef"),
    VideoSpec("travel", "alpine-summit-hike-sunrise.mp4", 1310.0, "hiking", "nature", 0.8,
              "hikers reach a snowy alpine summit as the sun rises"),
    VideoSpec("travel", "bald-eagles-river-migration.mp4", 1500.0, "nature", None, 0.9,
              "a bald eagle snatches a salmon from the river"),
    VideoSpec("travel", "theme-park-rollercoaster-pov.mp4", 188.0, "amusement", "travel", 0.85,
              "a first person view from the front seat of a rollercoaster"),
    VideoSpec("travel", "rooftop-bars-and-restaurants-guide.mp4", 482.0, "dining", "travel", 0.8,
              "friends toast with cocktails on a rooftop bar at sunset"),
    VideoSpec("tech", "smartphone-unboxing-review.mp4", 845.0, "technology", None, 0.9,
              "hands peel the protective film off a new smartphone screen"),
    VideoSpec("tech", "laptop-battery-benchmark.mp4", 690.0, "technology", None, 0.85,
              "a battery graph drops slowly on the laptop screen during the benchmark"),
    VideoSpec("tech", "python-api-programming-tutorial.mp4", 2310.0, "coding", None, 0.9,
              "a Python web API returns JSON in the browser"),
    VideoSpec("tech", "javascript-debugging-livestream.mp4", 3600.0, "coding", "gaming", 0.8,
              "a red stack trace scrolls in the browser console"),
    VideoSpec("tech", "guitar-lesson-beginner-chords.mp4", 720.0, "music", None, 0.9,
              "a close up of fingers pressing a G chord on an acoustic guitar"),
    VideoSpec("tech", "festival-rock-concert-live.mp4", 2790.0, "music", "dance", 0.8,
              "the crowd jumps and dances as fireworks go off above the festival stage"),
    VideoSpec("tech", "symphony-orchestra-concert.mp4", 3400.0, "music", None, 0.9,
              "the conductor raises the baton and the orchestra begins the symphony"),
    VideoSpec("tech", "electric-suv-test-drive.mp4", 1080.0, "cars", "technology", 0.8,
              "the electric SUV charges at a fast charging station"),
    VideoSpec("tech", "animated-short-film-fox.mp4", 480.0, "film", None, 0.9,
              "an animated fox chases fireflies through a moonlit meadow"),
    VideoSpec("tech", "rocket-launch-livestream.mp4", 1860.0, "space", "news", 0.8,
              "the rocket booster lands upright on a drone ship"),
    VideoSpec("tech", "esports-final-highlights.mp4", 900.0, "gaming", None, 0.9,
              "an esports team lifts the trophy on a stage full of screens"),
    VideoSpec("tech", "high-school-chemistry-lecture.mp4", 2700.0, "education", None, 0.9,
              "a teacher adds a drop of indicator and the liquid turns pink"),
    VideoSpec("tech", "primary-school-science-experiment.mp4", 540.0, "education", "fitness", 0.8,
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
