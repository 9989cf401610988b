"""What a model's outputs mean, one module per task (the contract's ``task``).

- ``classify``: one ``[batch, N]`` score vector per image; compared with modelport.common.agreement.
- ``detect``: boxes in the original photo, from a named decoder, NMS, box agreement and COCO mAP.
"""

TASKS = ("classify", "detect")
