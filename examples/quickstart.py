"""Train, attack, evaluate and export a classifier with advaug (seconds on a CPU).

python examples/quickstart.py [OUT_FOLDER]
"""

import sys

import advaug

out = sys.argv[1] if len(sys.argv) > 1 else "runs/quickstart"
cfg = advaug.make_config("smoke", data={"train_limit": 0}, classifier={"epochs": 4})  # digits
advaug.train_classifier(cfg, f"{out}/fgsm", technique="fgsm")  # FGSM adversarial training
model = advaug.load_classifier(f"{out}/fgsm")  # an nn.Module on [0, 1] images

test = advaug.data.load_splits(cfg.data).test
x, y = test.x.float() / 255, test.y
x_adv = advaug.attacks.PGD(model, eps=8 / 255, steps=10)(x, y)
print(f"PGD-10 at 8/255: {(model(x_adv).argmax(1) == y).float().mean():.3f} accuracy")

for name, m in advaug.evaluate_classifier(model, cfg)["metrics"].items():
    print(f"{name:>12}  {m['value']:.3f}  {m['protocol']}")
print("exported to", advaug.export(f"{out}/fgsm", f"{out}/export"))
