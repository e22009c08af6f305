"""Seeded synthetic VQAU-Bench (spec affect.md 1.7) [reconstruction]: long videos as segment timelines.

A video is a sequence of 5-s segments (``min_seconds``..``max_seconds``, 5-15 min by default) in a few scenes
(locations). 1-4 *affective clips* (8-30 s, one of the 13 labels, never overlapping) are placed in different scenes;
their segments carry the emotion's visual action, transcript lines, audio events and affect-cue tags (our own
per-emotion vocabularies; the Plutchik-8 cue words are words the NRC lexicon associates with that emotion).
Other segments are neutral filler, and ``distractor_rate`` of them are *near misses*: another emotion's action in
the same scene as a clip but without its cues, or the clip's sound without its action. Each clip gets **three vague
first-person queries** from templates mixing 1-2 partial visual cues (paraphrased hints, not the caption), an
optional audio cue, a temporal hint and a feeling phrase, plus a templated "summary" rationale. Ids mimic
``<a>_<b>_<8 digits>_Q<n>``.
"""

from __future__ import annotations

import numpy as np

from polymodal.affect.vqau.schema import EMOTIONS, Segment, VideoTimeline, VQAUBenchmark, VQAURecord

#: scene name (captions) -> vague hint (queries)
SCENES = {
    "coastal walkway": "by the sea", "train platform": "at the station", "city park": "in a park",
    "office floor": "at work", "hospital corridor": "in some hospital", "football stadium": "at a match",
    "kitchen": "in a kitchen", "forest trail": "out in the woods", "wedding hall": "at some party",
    "school classroom": "in a classroom", "parking garage": "in a garage", "rooftop terrace": "up on a roof",
    "street market": "at a market", "living room": "at home", "airport gate": "at the airport",
    "abandoned warehouse": "in an old building",
}

#: per emotion: visual actions (caption, vague hint), audio events, transcript lines, affect-cue tags, feelings
PROFILES: dict[str, dict[str, list]] = {
    "Joy": {"visual": [("friends laugh and dance together", "people dancing"),
                       ("a child jumps up and down with a balloon", "a kid with a balloon"),
                       ("a woman spins around holding a gift", "someone opening a present")],
            "audio": ["laughter", "upbeat music", "cheering"],
            "lines": ["this is the best day ever", "I can't stop smiling", "we did it, let's party"],
            "cues": ["delight", "glee", "laugh", "fun"],
            "feel": ["felt so light", "I was grinning like an idiot", "pure happy vibes"]},
    "Sadness": {"visual": [("a man sits alone holding an old photo", "someone with an old photo"),
                           ("a woman cries quietly by the window", "someone by a window"),
                           ("mourners stand around a coffin", "people in black")],
                "audio": ["sobbing", "slow piano", "rain"],
                "lines": ["I miss her so much", "it's never going to be the same", "why did he have to go"],
                "cues": ["grief", "weep", "mourn", "funeral"],
                "feel": ["left a lump in my throat", "felt so heavy", "I wanted to cry"]},
    "Anger": {"visual": [("two men shout and shove each other", "a shoving match"),
                         ("a driver slams his fist on the car roof", "a guy hitting a car"),
                         ("a manager throws papers across the desk", "papers flying")],
              "audio": ["shouting", "door slam", "glass breaking"],
              "lines": ["get out of my face", "you lied to me", "I've had enough of this"],
              "cues": ["rage", "furious", "fight", "yell"],
              "feel": ["my blood was boiling", "made me so mad", "I was fuming"]},
    "Fear": {"visual": [("a woman hides behind a door breathing fast", "someone hiding"),
                        ("a boy backs away from a growling dog", "a scary dog"),
                        ("hikers freeze as rocks tumble down", "rocks falling")],
             "audio": ["heavy breathing", "growling", "siren"],
             "lines": ["did you hear that", "please don't hurt me", "we need to get out now"],
             "cues": ["terror", "panic", "afraid", "alarm"],
             "feel": ["my heart was pounding", "I was so scared", "gave me the shakes"]},
    "Disgust": {"visual": [("a cook opens a fridge full of rotten food", "a smelly fridge"),
                           ("someone steps in an overflowing drain", "stepping in something nasty"),
                           ("a man spits out spoiled milk", "someone spitting out a drink")],
                "audio": ["retching", "squelching", "flies buzzing"],
                "lines": ["that is absolutely vile", "oh no, it smells awful", "I think I'm going to be sick"],
                "cues": ["vomit", "filth", "gross", "nausea"],
                "feel": ["made my stomach turn", "so gross", "I felt queasy"]},
    "Surprise": {"visual": [("friends jump out from behind the sofa", "people jumping out"),
                            ("a balloon arch suddenly collapses", "something collapsing"),
                            ("a stranger reveals a winning lottery ticket", "a ticket")],
                 "audio": ["gasp", "sudden bang", "crowd gasps"],
                 "lines": ["wait, what just happened", "no way, I did not see that coming", "you got me"],
                 "cues": ["sudden", "gasp", "shock", "astonishment"],
                 "feel": ["caught me off guard", "my jaw dropped", "totally out of nowhere"]},
    "Trust": {"visual": [("two partners shake hands firmly", "a firm handshake"),
                         ("a climber passes the rope to her partner", "someone holding a rope"),
                         ("a nurse gently reassures a patient", "a kind nurse")],
              "audio": ["calm voices", "soft guitar", "quiet applause"],
              "lines": ["I've got you, don't worry", "you can count on me", "we're in this together"],
              "cues": ["trust", "reliable", "agreement", "promise"],
              "feel": ["felt really safe", "like I could rely on them", "so reassuring"]},
    "Anticipation": {"visual": [("runners crouch at the starting line", "people about to race"),
                                ("a crowd watches the countdown clock", "a big clock"),
                                ("a girl waits by the door with her bag packed", "someone waiting with a bag")],
                     "audio": ["ticking clock", "drum roll", "murmuring crowd"],
                     "lines": ["any second now", "I can't wait", "here it comes"],
                     "cues": ["countdown", "anticipation", "prepare", "suspense"],
                     "feel": ["I was on the edge of my seat", "butterflies in my stomach", "couldn't wait"]},
    "Love": {"visual": [("a couple kisses under string lights", "a couple kissing"),
                        ("a father cradles his newborn baby", "someone holding a baby"),
                        ("an old couple holds hands on a bench", "two old people holding hands")],
             "audio": ["romantic song", "soft violin", "whispering"],
             "lines": ["I love you more than anything", "you mean the world to me", "stay with me forever"],
             "cues": ["adore", "tenderness", "sweetheart", "embrace"],
             "feel": ["my heart melted", "so tender", "felt all warm inside"]},
    "Horror": {"visual": [("a figure drags a body through the dark", "something being dragged"),
                          ("blood drips down a cracked mirror", "a cracked mirror"),
                          ("a pale face appears at the window at night", "a face at the window")],
               "audio": ["bloodcurdling scream", "creaking floorboards", "eerie drone"],
               "lines": ["what is that thing", "don't go down there", "it's coming for us"],
               "cues": ["gore", "corpse", "nightmare", "macabre"],
               "feel": ["gave me chills for days", "absolutely terrifying", "I couldn't look"]},
    "Pride": {"visual": [("a graduate raises her diploma on stage", "someone on a stage"),
                         ("an athlete lifts a trophy over her head", "someone holding something up"),
                         ("a father pins a medal on his son's jacket", "a medal")],
              "audio": ["applause", "brass fanfare", "cheering crowd"],
              "lines": ["I am so proud of you", "all that hard work paid off", "you earned this"],
              "cues": ["proud", "achievement", "honor", "triumph"],
              "feel": ["I stood a little taller", "felt so proud", "a real chest-puffing moment"]},
    "Satisfaction": {"visual": [("a woman sinks into the sofa after cleaning the house", "someone flopping on a couch"),
                                ("a carpenter runs a hand over the finished table", "a finished table"),
                                ("a man takes the first sip of coffee and sighs", "someone sipping a drink")],
                     "audio": ["contented sigh", "soft jazz", "kettle whistle"],
                     "lines": ["finally, that's done", "just perfect", "that hit the spot"],
                     "cues": ["relief", "satisfied", "content", "fulfilled"],
                     "feel": ["felt so good to be done", "that deep sigh feeling", "just content"]},
    "Neutral": {"visual": [("a clerk stamps forms at a counter", "someone at a counter"),
                           ("a commuter reads the timetable", "someone reading a sign"),
                           ("a man waters the plants", "someone watering plants")],
                "audio": ["background hum", "typing", "distant traffic"],
                "lines": ["next one please", "the bus leaves at ten", "put it over there"],
                "cues": ["calm", "routine", "ordinary", "plain"],
                "feel": ["nothing special really", "kind of meh", "just an ordinary moment"]},
}

FILLER_VISUAL = ["people walk past", "a car drives by slowly", "a man checks his phone", "a woman carries groceries",
                 "the camera pans across the scene", "a cyclist passes", "two people chat briefly",
                 "someone ties a shoelace", "a dog sniffs the ground", "a worker sweeps the floor",
                 "a couple looks at a map", "pigeons peck at crumbs", "a bus pulls in", "a man sips water"]
FILLER_AUDIO = ["ambient noise", "footsteps", "wind", "chatter", "traffic", "birdsong", "engine idling"]
FILLER_LINES = ["okay, over here", "what time is it", "turn left at the corner", "did you bring the keys",
                "let's grab lunch later", "the weather is fine today", "hold on a second", "see you tomorrow", ""]

#: reference "summary" phrasings (deliberately not the rule rationale's template)
SUMMARIES = (
    "The {emotion} comes from {action} at the {scene}, with {audio} in the background and the words \"{line}\".",
    "{action} ({scene}); the {audio} and the line \"{line}\" make the {emotion} clear.",
    "We see {action} at the {scene} while {audio} plays; \"{line}\" is heard, so the moment reads as {emotion}.",
)

TEMPORAL = {"start": ["near the beginning", "early on", "right at the start"],
            "middle": ["somewhere in the middle", "halfway through"],
            "end": ["toward the end", "near the end", "right at the end"]}

QUERY_TEMPLATES = (
    "I kinda remember {visual} {scene} {time} — {feel}.",
    "There was this bit {scene} with {visual} and {audio}... {feel}.",
    "Can't recall exactly, something about {visual} {time}, {audio}; {feel}.",
    "The part where {visual} {scene}? {feel}.",
    "I think it was {time}, {visual}, you could hear {audio} — {feel}.",
)


def _pick(rng: np.random.Generator, seq):
    return seq[int(rng.integers(len(seq)))]


def _position(start: float, end: float, duration: float) -> str:
    c = (start + end) / 2 / duration
    return "start" if c < 1 / 3 else ("end" if c > 2 / 3 else "middle")


def make_queries(rng: np.random.Generator, emotion: str, visual_hint: str, scene_hint: str, audio: str,
                 position: str, n: int = 3) -> list[str]:
    """``n`` distinct vague first-person queries for one clip (templates without replacement)."""
    prof = PROFILES[emotion]
    order = rng.permutation(len(QUERY_TEMPLATES))[:n]
    out = []
    for k in order:
        out.append(QUERY_TEMPLATES[k].format(visual=visual_hint, scene=scene_hint, time=_pick(rng, TEMPORAL[position]),
                                             audio=audio, feel=_pick(rng, prof["feel"])))
    return [q[0].upper() + q[1:] for q in out]


def make_video(rng: np.random.Generator, video_id: str, *, segment_seconds: float = 5.0, min_seconds: float = 300,
               max_seconds: float = 900, max_clips: int = 4, distractor_rate: float = 0.15,
               emotions: tuple[str, ...] = EMOTIONS) -> tuple[VideoTimeline, list[dict]]:
    """One timeline and its clips (``{"start", "end", "emotion", "visual_hint", "scene_hint", "audio", "summary"}``)."""
    n_seg = int(round(rng.uniform(min_seconds, max_seconds) / segment_seconds))
    n_seg = max(n_seg, 8)
    scene_names = list(SCENES)
    n_scenes = int(min(len(scene_names), max(2, min(5, n_seg // 6))))
    scenes = [scene_names[i] for i in rng.choice(len(scene_names), n_scenes, replace=False)]
    cuts = np.sort(rng.choice(np.arange(1, n_seg), n_scenes - 1, replace=False)) if n_scenes > 1 else []
    scene_of = np.zeros(n_seg, dtype=int)
    for c in cuts:
        scene_of[c:] += 1
    segs: list[dict] = []
    for i in range(n_seg):
        segs.append({"start": i * segment_seconds, "end": (i + 1) * segment_seconds,
                     "caption": f"{scenes[scene_of[i]]}: {_pick(rng, FILLER_VISUAL)}",
                     "transcript": _pick(rng, FILLER_LINES), "audio_tags": [_pick(rng, FILLER_AUDIO)],
                     "affect_cues": []})
    # clips: 8-30 s -> 2-6 segments, in distinct scenes, not overlapping, with a free segment around each
    n_clips = int(rng.integers(1, max_clips + 1))
    used = np.zeros(n_seg, dtype=bool)
    clips: list[dict] = []
    for _ in range(n_clips * 8):
        if len(clips) == n_clips:
            break
        length = int(rng.integers(2, 7))
        if length + 2 > n_seg:
            continue
        s0 = int(rng.integers(1, n_seg - length))
        if used[max(0, s0 - 1): s0 + length + 1].any():
            continue
        used[s0: s0 + length] = True
        emo = _pick(rng, emotions)
        prof = PROFILES[emo]
        caption, vhint = _pick(rng, prof["visual"])
        scene = scenes[scene_of[s0]]
        audio = _pick(rng, prof["audio"])
        lines = list(rng.permutation(prof["lines"]))
        for j in range(length):
            k = s0 + j
            # explicit affect cues on most, not all, clip segments
            cues = [str(c) for c in rng.choice(prof["cues"], 2, replace=False)] if rng.random() < 0.7 else []
            segs[k].update(caption=f"{scene}: {caption}", transcript=str(lines[j % len(lines)]),
                           audio_tags=[audio] + ([_pick(rng, prof["audio"])] if rng.random() < 0.5 else []),
                           affect_cues=cues)
        # sub-segment jitter so windows are not exactly segment-aligned
        start = s0 * segment_seconds + float(rng.uniform(0, 0.4 * segment_seconds))
        end = (s0 + length) * segment_seconds - float(rng.uniform(0, 0.4 * segment_seconds))
        summary = _pick(rng, SUMMARIES).format(scene=scene, action=caption, audio=audio, line=lines[0],
                                               emotion=emo.lower())
        clips.append({"start": round(start, 2), "end": round(end, 2), "emotion": emo, "visual_hint": vhint,
                      "scene_hint": SCENES[scene], "audio": audio, "summary": summary, "scene": scene})
    # near misses: another emotion's action in a clip's scene without cues, or a clip's sound without its action
    free = np.flatnonzero(~used)
    for k in free:
        if rng.random() >= distractor_rate or not clips:
            continue
        clip = _pick(rng, clips)
        kind = rng.random()
        other = _pick(rng, [e for e in emotions if e != clip["emotion"]] or list(emotions))
        if kind < 0.4:  # the clip's scene, another emotion's action, no cues
            segs[k]["caption"] = f"{clip['scene']}: {_pick(rng, PROFILES[other]['visual'])[0]}"
        elif kind < 0.7:  # the clip's sound without its action
            segs[k]["audio_tags"] = [clip["audio"]]
        else:  # filler with conflicting affect: another emotion's cue and line
            segs[k]["affect_cues"] = [_pick(rng, PROFILES[other]["cues"])]
            segs[k]["transcript"] = _pick(rng, PROFILES[other]["lines"])
    timeline = VideoTimeline(video_id=video_id, segments=tuple(Segment(**s) for s in segs))
    return timeline, clips


def make_benchmark(n_videos: int = 20, seed: int = 0, *, segment_seconds: float = 5.0, min_seconds: float = 300,
                   max_seconds: float = 900, max_clips: int = 4, distractor_rate: float = 0.15,
                   queries_per_clip: int = 3) -> VQAUBenchmark:
    """A seeded synthetic VQAU-Bench: ``n_videos`` timelines, 1-``max_clips`` clips each, 3 queries per clip."""
    if n_videos < 1:
        raise ValueError("n_videos must be >= 1")
    if not 0 < min_seconds <= max_seconds:
        raise ValueError(f"need 0 < min_seconds <= max_seconds, got {min_seconds}, {max_seconds}")
    rng = np.random.default_rng([seed, 0x7A0])
    videos: dict[str, VideoTimeline] = {}
    records: list[VQAURecord] = []
    for _ in range(n_videos):
        a = 1000 + int(rng.integers(0, 9000))
        vid = f"{a}_{a}"
        while vid in videos:
            a += 1
            vid = f"{a}_{a}"
        timeline, clips = make_video(rng, vid, segment_seconds=segment_seconds, min_seconds=min_seconds,
                                     max_seconds=max_seconds, max_clips=max_clips, distractor_rate=distractor_rate)
        videos[vid] = timeline
        for clip in sorted(clips, key=lambda c: c["start"]):
            pos = _position(clip["start"], clip["end"], timeline.duration)
            queries = make_queries(rng, clip["emotion"], clip["visual_hint"], clip["scene_hint"], clip["audio"], pos,
                                   n=queries_per_clip)
            clip_no = int(rng.integers(0, 10**8))
            for q_i, q in enumerate(queries, 1):
                records.append(VQAURecord(id=f"{vid}_{clip_no:08d}_Q{q_i}", video_id=vid, start=clip["start"],
                                          end=clip["end"], query=q, emotion=clip["emotion"], summary=clip["summary"]))
    return VQAUBenchmark(videos, records)
