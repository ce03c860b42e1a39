import hashlib, json, sys, tempfile
from pathlib import Path
from rareid.data.synthetic import SyntheticWorld, write_synthetic_dataset, make_contact_sheet
out = {}
with tempfile.TemporaryDirectory() as d:
    write_synthetic_dataset(Path(d)/"ds", identities=30, cameras=4, images_per_camera=(2,3), distractors=6, junk=6, seed=3, progress=False)
    for p in sorted((Path(d)/"ds").rglob("*")):
        if p.is_file():
            out[str(p.relative_to(d))] = hashlib.sha256(p.read_bytes()).hexdigest()
    make_contact_sheet(Path(d)/"sheet.png", seed=1, identities=40)
    out["sheet"] = hashlib.sha256((Path(d)/"sheet.png").read_bytes()).hexdigest()
w = SyntheticWorld(60, 5, 4, 30)
for pid in list(range(-1, 61, 3)):
    for cam in range(4):
        for view in (None, 0, 1, 2, 3):
            for clean in (False, True):
                if pid <= 0 and clean: continue
                img = w.render(pid, cam, 100 + cam + pid, view=view, clean=clean)
                out[f"r{pid}_{cam}_{view}_{clean}"] = hashlib.sha256(img.tobytes()).hexdigest()
json.dump(out, open(sys.argv[1], "w"), indent=0, sort_keys=True)
print(len(out))
