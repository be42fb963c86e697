"""Named parameter sets (smoke / laptop / paper) for each paper notebook.

A notebook's `parameters` cell holds its smoke values; `python -m kitlib reproduce --profile P`
injects `get(paper, P)` through papermill, then any `-p key=value` overrides.
"""
from __future__ import annotations

import copy

PROFILE_NAMES = ("smoke", "laptop", "paper")

# paper key -> profile -> {notebook parameter: value}. The smoke values equal the notebook's own defaults.
PROFILES: dict[str, dict[str, dict]] = {
    "perturbed_input": {
        # synthetic set, tiny CNN, 2 folds, few epochs: every table and figure in about 2 minutes on 2 CPU cores
        "smoke": {},
        # Skin7 for real (HAM10000 copy in ../shared/data) on 2 CPU cores in about 45 min: TinyCNN (width 32) at
        # 32 px for 30 epochs, 3 grouped folds. Measured on fold 0 with CE (Dec 2026, same wall time): this reached
        # test MCR 45 % where ResNet18 at 64 px (6 epochs, the most that fit) reached 30 %.
        "laptop": {
            "datasets": ["skin7"],
            "dataset_options": {"skin7": {"size": 32}},
            "image_size": {"skin7": 32},
            "crop": {},
            "protocol": {"skin7": "kfold"},
            "backbones": ["tiny_cnn"],
            "eps_backbones": ["tiny_cnn"],
            "methods": ["ce", "rs", "rw", "ldam_drw"],
            "folds": 3,
            "epochs": 30,
            "batch_size": {"skin7": 64},
            "lr": {"tiny_cnn": 0.05},
            "schedule": "cosine",
            "model_width": 32,
            "eps_grid": [0, 0.001, 0.003, 0.01, 0.03, 0.1],
            "T_grid": [1, 10, 100, 1000, 10000],
            "ablation_methods": ["ce", "rs", "rw", "ldam_drw"],
            "timing_images": 512,
        },
        # Section 3.1: ImageNet-pretrained ResNet50 / MobileNetV2 / DenseNet169, SGD momentum 0.9, wd 5e-4,
        # lr 0.01 (MobileNetV2) or 0.001, x0.1 every 50 epochs, 1 warm-up epoch, 200 epochs
        "paper": {
            "datasets": ["skin7", "octmnist", "xray6"],
            "dataset_options": {"skin7": {"size": 300}, "octmnist": {"size": 28}, "xray6": {"size": 224}},
            "image_size": {"skin7": 300, "octmnist": 32, "xray6": 224},
            "crop": {"skin7": 224},
            "protocol": {"skin7": "kfold", "octmnist": "official", "xray6": "kfold"},
            "backbones": ["resnet50", "mobilenet_v2", "densenet169"],
            "eps_backbones": ["resnet50", "mobilenet_v2"],
            "methods": ["ce", "rs", "rw", "focal", "drs", "ldam_drw"],
            "folds": 5,
            "epochs": 200,
            "batch_size": {"skin7": 32, "octmnist": 128, "xray6": 32},
            "lr": {"resnet50": 0.001, "mobilenet_v2": 0.01, "densenet169": 0.001},
            "schedule": "step",
            "step_size": 50,
            "warmup_epochs": 1,
            "pretrained": True,
            "eps_grid": [0, 0.0001, 0.0005, 0.001, 0.002, 0.005],
            "T_grid": [1, 10, 100, 1000, 10000],
            "ablation_methods": ["ce", "rs", "rw", "focal", "drs", "ldam_drw"],
            "timing_images": 512,
        },
    },
    "care": {
        # synthetic lesions with their masks, TinyCNN (width 8) at 32 px, 3 + 2 epochs, 2 seeds: every table and figure
        "smoke": {},
        # HAM10000 (Skin7) with its lesion masks at 32 px, a stratified subset of ~4000 images (DF and VASC kept whole),
        # one 80/20 split, TinyCNN (width 16), 3 seeds; Table 4 without the GPU backbones
        "laptop": {
            "dataset": "skin7", "dataset_options": {"size": 32, "masks": True}, "max_images": 4000,
            "keep_all_below": 150, "image_size": 32, "seeds": [0, 1, 2], "backbone": "tiny_cnn",
            "table4_backbones": ["tiny_cnn"], "model_width": 16, "epochs": 6, "batch_size": 64, "lr": 0.002,
            "finetune_epochs": 3, "finetune_lr": 0.0001, "alphas": [0.3], "taus": [0.5], "lams": [0.5],
            "box_scales": [0.7, 1.1], "box_class_sets": [["df"], ["df", "vasc"]], "auto_bases": ["rw"],
            "seg_steps": 60, "seg_images": 300, "overlay_images": 4,
        },
        # Sections 4.1-4.2 and Table 1: ISIC 2018 at 224 px, ResNet50 (ImageNet), AdamW 1e-4, batch 96, 200 + 200 epochs,
        # alpha 0.5, tau 0.7, lambda 1; the full sweeps; RSNA pneumonia is not in the kit (not run)
        "paper": {
            "dataset": "skin7", "dataset_options": {"size": 224, "masks": True}, "max_images": None,
            "image_size": 224, "seeds": [0, 1, 2], "backbone": "resnet50", "pretrained": True,
            "table4_backbones": ["resnet18", "resnet50", "resnet152", "vgg19_fc"], "epochs": 200, "batch_size": 96,
            "lr": 0.0001, "finetune_epochs": 200, "finetune_lr": 0.0001, "alphas": [0.1, 0.3, 0.5, 0.7, 0.9],
            "taus": [0.1, 0.3, 0.5, 0.7, 0.9], "lams": [0.1, 0.5, 1.0, 2.0], "box_scales": [0.7, 0.9, 1.0, 1.1],
            "box_class_sets": [["df"], ["df", "vasc"], ["df", "vasc", "akiec"]], "auto_bases": ["rw", "focal"],
            "seg_steps": 2000, "seg_images": 2000, "overlay_images": 6,
        },
    },
    "balanced_mixup": {
        # synthetic set for both tasks, two tiny CNNs, 3 epochs: every table and figure in about 2 minutes on 2 CPUs
        "smoke": {},
        # DR: RetinaMNIST (28 px, official split, 3 seeds); GI stand-in: Skin7 at 28 px, a stratified subset,
        # 5 folds grouped by lesion; a small and a large TinyCNN stand in for MobileNetV2 / ResNeXt-50
        "laptop": {
            "dr_dataset": "retinamnist", "dr_options": {}, "dr_protocol": "official", "dr_image_size": 28,
            "external_dataset": "messidor2", "external_options": {"size": 28},
            "gi_dataset": "skin7", "gi_options": {"size": 28, "masks": False}, "gi_max_images": 1200,
            "gi_folds": 5, "gi_image_size": 28,
            "seeds": [0, 1, 2], "backbones": ["tiny_cnn@8", "tiny_cnn@16"],
            "epochs": 8, "batch_size": 32, "lr": 0.05, "patience": 2,
        },
        # Sect. 2.4 / 3.1 and the authors' code: SGD lr 0.01, batch 8, lr x0.1 on a validation plateau, best
        # validation quad-kappa (DR) / MCC (GI), flip TTA; MobileNetV2 and ResNeXt-50 (BiT); epochs and image size
        # are not stated (50 epochs, 512 px chosen); EyePACS official split, Messidor-2 external, Hyper-Kvasir 5 folds
        "paper": {
            "dr_dataset": "eyepacs", "dr_options": {"size": 512}, "dr_protocol": "official", "dr_image_size": 512,
            "external_dataset": "messidor2", "external_options": {"size": 512},
            "gi_dataset": "hyper_kvasir", "gi_options": {"size": 512}, "gi_max_images": None, "gi_folds": 5,
            "gi_image_size": 512, "seeds": [0], "backbones": ["mobilenet_v2", "resnext50_bit"],
            "pretrained": True, "epochs": 50, "batch_size": 8, "lr": 0.01, "weight_decay": 0.0, "patience": 5,
        },
    },
}

PROFILES["contrastive"] = {
    # two synthetic sets (7 and 5 classes) standing in for ISIC 2018 and APTOS 2019, a tiny CNN, 3 epochs, 3 seeds
    "smoke": {},
    # HAM10000 (= ISIC 2018) at 32 px and RetinaMNIST (28 px) as the APTOS 2019 stand-in, a small CNN, 3 seeds
    "laptop": {
        "datasets": {"ISIC2018": "skin7", "APTOS2019": "retinamnist"},
        "dataset_options": {"ISIC2018": {"size": 32}, "APTOS2019": {}},
        "image_size": {"ISIC2018": 32, "APTOS2019": 28},
        "model_width": 16,
        "epochs": {"ISIC2018": 4, "APTOS2019": 12},
        "batch_size": 128,
        "stage2_epochs": 4,
        "stage2_batch_size": 256,
        "temperatures": [0.05, 1.0],
        "tsne_points": 1000,
    },
    # Sect. 4.3: ResNet50 from scratch, 256 px with random 224 crops, SGD lr 0.1 cosine to 1e-4, wd 1e-4, batch
    # 192; 1000 epochs on ISIC (2000 on APTOS), resampled runs the same number of updates; head: lr 1 -> 1e-4,
    # batch 512; Table 3's five temperatures
    "paper": {
        "datasets": {"ISIC2018": "skin7", "APTOS2019": "aptos2019"},
        "dataset_options": {"ISIC2018": {"size": 256}, "APTOS2019": {"size": 256}},
        "image_size": {"ISIC2018": 256, "APTOS2019": 256},
        "crop": {"ISIC2018": 224, "APTOS2019": 224},
        "backbone": "resnet50",
        "epochs": {"ISIC2018": 1000, "APTOS2019": 2000},
        "batch_size": 192,
        "stage2_epochs": 100,  # "same settings" as stage 1 but under an hour on one GPU: epochs not stated
        "stage2_batch_size": 512,
        "temperatures": [0.01, 0.05, 0.1, 0.5, 1.0],
        "tsne_points": 2000,
    },
}


def get(paper: str, profile: str) -> dict:
    """Parameters for `paper` at `profile` (a deep copy; always includes `profile`)."""
    if profile not in PROFILE_NAMES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {PROFILE_NAMES}")
    if paper not in PROFILES:
        raise KeyError(f"no profiles defined for paper {paper!r}; known: {sorted(PROFILES)}")
    params = copy.deepcopy(PROFILES[paper].get(profile, {}))
    params["profile"] = profile
    return params
PROFILES["metric_learning"] = {
    # synthetic stand-ins (Skin7-like 7 classes; Table 5: two 10-class sets, rho 10), TinyCNN, 2 epochs, 2 seeds
    "smoke": {},
    # Skin7 (HAM10000 copy) at 32 px, 7.5 : 0.5 : 2 split, 3 seeds, TinyCNN width 16, 8 epochs; a subset of the
    # baselines (CE, RW, LDAM-DRW, CE->cRW, CE->cRS) and the three CE+L_M -> cRW; Table 4 and 5 not run at laptop
    "laptop": {
        "datasets": ["skin7"], "dataset_options": {"skin7": {"size": 32, "masks": False}}, "image_size": 32,
        "seeds": [0, 1, 2], "backbone": "tiny_cnn@16", "table4_backbones": [],
        "baselines": ["ce", "rw", "ldam_drw", "ce->crw", "ce->crs"],
        "sweep_weights": {"ce+ct": [0.0001, 0.001], "ce+tp": [0.0001, 0.001], "ce+sc": [0.1, 1.0]},
        "table5_datasets": [], "epochs": 8, "batch_size": 32, "lr": 0.05, "warmup_epochs": 1,
    },
    # Sec. 3.1: ImageNet ResNet50 at 224 px (resize 300, crop 224), 100 epochs, warm-up 5 to lr 0.001, cosine to 1e-6
    "paper": {
        "datasets": ["skin7", "xray9", "pathmnist_lt"], "dataset_options": {}, "image_size": 224, "seeds": [0, 1, 2],
        "backbone": "resnet50", "table4_backbones": ["densenet121", "mobilenet_v2"],
        "baselines": ["ce", "rs", "rw", "ldam", "ldam_drw", "ce_drw", "focal", "cb_focal", "bbn", "mixup", "cutmix",
                      "ce->crw", "ldam->crw", "focal->crw", "cb_focal->crw", "mixup->crw", "cutmix->crw", "ce->crs"],
        "sweep_weights": {"ce+ct": [5e-5, 0.0002, 0.001, 0.004, 0.02], "ce+tp": [5e-5, 0.0002, 0.001, 0.01, 0.05],
                          "ce+sc": [0.04, 0.2, 1.0, 1.8, 5.0]},
        "table5_datasets": ["flower_lt", "stanford_dogs_lt"], "table5_options": {},
        "epochs": 100, "batch_size": 32, "lr": 0.001, "warmup_epochs": 5, "pretrained": True,
    },
}
