"""Short codes a person can read aloud (`7-revenge-guitarist`): a nameplate and words of the
PGP word list, made, read back and checked here, before any of them goes near the network."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from ringdrop.errors import CodeError

__all__ = [
    "EVEN_WORDS",
    "NAMEPLATE_MAX",
    "ODD_WORDS",
    "WORDS",
    "ShortCode",
    "looks_like_code",
]

NAMEPLATE_MAX = 999
"""The largest nameplate `ShortCode.generate` picks; a typed one may have up to six digits."""
WORDS = 2
"""Words in a code that `ShortCode.generate` makes; a typed code may have two or three."""
_TYPED_NAMEPLATE_MAX = 999_999
_SEPARATORS = re.compile(r"[\s-]+")

# The nameplate says where the two sides meet and is no secret; the words are the secret. They
# come from the PGP word list (Juola and Zimmermann), as magic-wormhole's do: 256 two-syllable
# words for even positions and 256 three-syllable ones for odd positions, one byte a word. Chosen
# over larger lists (the EFF's 1,296 short words: 10.3 bits a word against 8) because it was
# built for reading aloud, its words picked to sound unlike each other, and because the
# alternation catches a dropped, doubled or swapped word while the code is parsed: a mistyped
# code that reached the other side would count as a wrong guess and end the code for both.
_EVEN_TEXT = """
    aardvark absurd accrue acme adrift adult afflict ahead aimless algol allow alone ammo
    ancient apple artist assume athens atlas aztec baboon backfield backward banjo beaming
    bedlamp beehive beeswax befriend belfast berserk billiard bison blackjack blockade
    blowtorch bluebird bombast bookshelf brackish breadline breakup brickyard briefcase
    burbank button buzzard cement chairlift chatter checkup chisel choking chopper christmas
    clamshell classic classroom cleanup clockwork cobra commence concert cowbell crackdown
    cranky crowfoot crucial crumpled crusade cubic dashboard deadbolt deckhand dogsled
    dragnet drainage dreadful drifter dropper drumbeat drunken dupont dwelling eating edict
    egghead eightball endorse endow enlist erase escape exceed eyeglass eyetooth facial
    fallout flagpole flatfoot flytrap fracture framework freedom frighten gazelle geiger
    glitter glucose goggles goldfish gremlin guidance hamlet highchair hockey indoors
    indulge inverse involve island jawbone keyboard kickoff kiwi klaxon locale lockup merit
    minnow miser mohawk mural music necklace neptune newborn nightbird oakland obtuse
    offload optic orca payday peachy pheasant physique playhouse pluto preclude prefer
    preshrunk printer prowler pupil puppy python quadrant quiver quota ragtime ratchet
    rebirth reform regain reindeer rematch repay retouch revenge reward rhythm ribcage
    ringbolt robust rocker ruffled sailboat sawdust scallion scenic scorecard scotland
    seabird select sentence shadow shamrock showgirl skullcap skydive slingshot slowdown
    snapline snapshot snowcap snowslide solo southward soybean spaniel spearhead spellbind
    spheroid spigot spindle spyglass stagehand stagnate stairway standard stapler steamship
    sterling stockman stopwatch stormy sugar surmount suspense sweatband swelter tactics
    talon tapeworm tempest tiger tissue tonic topmost tracker transit trauma treadmill
    trojan trouble tumor tunnel tycoon uncut unearth unwind uproot upset upshot vapor
    village virus vulcan waffle wallet watchword wayside willow woodlark zulu
"""
EVEN_WORDS: tuple[str, ...] = tuple(_EVEN_TEXT.split())
"""The PGP word list's two-syllable words, by byte value: the first and third word of a code."""

_ODD_TEXT = """
    adroitness adviser aftermath aggregate alkali almighty amulet amusement antenna
    applicant apollo armistice article asteroid atlantic atmosphere autopsy babylon
    backwater barbecue belowground bifocals bodyguard bookseller borderline bottomless
    bradbury bravado brazilian breakaway burlington businessman butterfat camelot candidate
    cannonball capricorn caravan caretaker celebrate cellulose certify chambermaid cherokee
    chicago clergyman coherence combustion commando company component concurrent confidence
    conformist congregate consensus consulting corporate corrosion councilman crossover
    crucifix cumbersome customer dakota decadence december decimal designing detector
    detergent determine dictator dinosaur direction disable disbelief disruptive distortion
    document embezzle enchanting enrollment enterprise equation equipment escapade eskimo
    everyday examine existence exodus fascinate filament finicky forever fortitude frequency
    gadgetry galveston getaway glossary gossamer graduate gravity guitarist hamburger
    hamilton handiwork hazardous headwaters hemisphere hesitate hideaway holiness hurricane
    hydraulic impartial impetus inception indigo inertia infancy inferno informant insincere
    insurgent integrate intention inventive istanbul jamaica jupiter leprosy letterhead
    liberty maritime matchmaker maverick medusa megaton microscope microwave midsummer
    millionaire miracle misnomer molasses molecule montana monument mosquito narrative
    nebula newsletter norwegian october ohio onlooker opulent orlando outfielder pacific
    pandemic pandora paperweight paragon paragraph paramount passenger pedigree pegasus
    penetrate perceptive performance pharmacy phonetic photograph pioneer pocketful
    politeness positive potato processor provincial proximate puberty publisher pyramid
    quantity racketeer rebellion recipe recover repellent replica reproduce resistor
    responsive retraction retrieval retrospect revenue revival revolver sandalwood sardonic
    saturday savagery scavenger sensation sociable souvenir specialist speculate stethoscope
    stupendous supportive surrender suspicious sympathy tambourine telephone therapist
    tobacco tolerance tomorrow torpedo tradition travesty trombonist truncated typewriter
    ultimate undaunted underfoot unicorn unify universe unravel upcoming vacancy vagabond
    vertigo virginia visitor vocalist voyager warranty waterloo whimsical wichita wilmington
    wyoming yesteryear yucatan
"""
ODD_WORDS: tuple[str, ...] = tuple(_ODD_TEXT.split())
"""The PGP word list's three-syllable words, by byte value: the second word of a code."""

_EVEN = frozenset(EVEN_WORDS)
_ODD = frozenset(ODD_WORDS)


@dataclass(frozen=True)
class ShortCode:
    """A nameplate and two or three words; `str()` is its one spelling, and the PAKE password."""

    nameplate: int
    words: tuple[str, ...]

    def __str__(self) -> str:
        return "-".join((str(self.nameplate), *self.words))

    @property
    def password(self) -> bytes:
        """The whole code as the two sides must both hold it."""
        return str(self).encode("ascii")

    @property
    def entropy_bits(self) -> int:
        """What a guesser does not know: 8 bits a word (the nameplate is public)."""
        return 8 * len(self.words)

    @classmethod
    def generate(
        cls,
        nameplate: int | None = None,
        *,
        randbelow: Callable[[int], int] = secrets.randbelow,
    ) -> ShortCode:
        """A fresh code of `WORDS` words from a cryptographic random source; its nameplate is
        `nameplate`, else a random one from 1 to `NAMEPLATE_MAX`."""
        if nameplate is None:
            nameplate = 1 + randbelow(NAMEPLATE_MAX)
        words = tuple(
            (EVEN_WORDS, ODD_WORDS)[position % 2][randbelow(256)] for position in range(WORDS)
        )
        return cls(nameplate, words)

    @classmethod
    def parse(cls, text: str) -> ShortCode:
        """The code `text` spells (any case; words joined by hyphens or spaces); `CodeError`
        names what is wrong with one that no sender could have made."""
        parts = [p for p in _SEPARATORS.split(text.strip().lower()) if p]
        if not parts or not parts[0].isdigit() or not parts[0].isascii():
            raise CodeError(
                f"{_shown(text)} is not a code: a code starts with a number, its nameplate "
                "(as in 7-revenge-guitarist)."
            )
        nameplate = int(parts[0])
        if not 1 <= nameplate <= _TYPED_NAMEPLATE_MAX:
            raise CodeError(f"A code's nameplate is a number from 1 to {_TYPED_NAMEPLATE_MAX}.")
        words = tuple(parts[1:])
        if not 2 <= len(words) <= 3:
            raise CodeError(
                f"A code has two or three words after its number, and {_shown(text)} has "
                f"{len(words)}."
            )
        for position, word in enumerate(words):
            _check_word(word, position)
        return cls(nameplate, words)


def looks_like_code(text: str) -> bool:
    """Whether `text` is meant as a short code rather than a ticket (it starts with digits and
    a separator), so that a mistyped one is reported as a code."""
    return re.match(r"\s*\d+[\s-]", text) is not None


def _check_word(word: str, position: int) -> None:
    expected, other = (_EVEN, _ODD) if position % 2 == 0 else (_ODD, _EVEN)
    if word in expected:
        return
    ordinal = ("first", "second", "third")[position]
    if word in other:
        raise CodeError(
            f"{_shown(word)} cannot be the {ordinal} word of a code: the words alternate "
            "between two and three syllables, so one is missing, doubled or out of order."
        )
    import difflib  # only for a mistyped word: not loaded to start

    near = difflib.get_close_matches(word, sorted(expected), n=1, cutoff=0.7)
    hint = f" Did you mean {near[0]!r}?" if near else ""
    raise CodeError(f"{_shown(word)} is not a word that codes use.{hint}")


def _shown(text: str) -> str:
    return ascii(text[:40])
