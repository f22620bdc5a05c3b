"""The bifurcation authors' other attacks, run through adversarial-robustness-toolbox (ART).

Broda-Milian, Al-Mallah and Dagdougui (2024) ran, besides their own bifurcated PGD, these attacks
with ART 1.16 on their CityLearn victims (RMC-AIvsAI/A-Novel-Bifurcation-Method-for-Observation-
Perturbation-Attacks-on-Reinforcement-Learning-Agents); each is rebuilt here on ART's own classes
(``pip install 'rlkit[art]'``), as an rlkit attack usable from an attack config::

    attack:
      eps: [0.05]
      attacks:
        - {name: art_apgd, mask: [calendar]}                       # uAPGD DLloss 05 eps
        - {name: art_acg, eps: [0.03], mask: [calendar, pv, load]} # uACG 03 (SAC)
        - {name: art_dynamic_eps, eps: [0.07], mask: [calendar]}   # dynamic_untargeted_acg
        - {name: art_optimal_bb, eps: [1.0], settings: {adversary: /tmp/authors/adv.zip}}
        - {name: art_snooping_fgm, settings: {dataset: /tmp/authors/baseline_obs-a.csv}}

=====================  =========================================  ==============================
name                   class                                      the authors' run
=====================  =========================================  ==============================
``art_apgd``           :class:`ARTAutoPGD` (``AutoProjectedGradi-  ``uAPGD DLloss 05 eps``
                       entDescent``)                              (20-bin PPO)
``art_acg``            :class:`ARTAutoCG` (``AutoConjugate-       ``uACG_binary_SAC_05_eps``,
                       Gradient``)                                ``..._03_eps``, ``bifurcated_
                                                                  uACG_DLloss_03_...``
``art_dynamic_eps``    :class:`ARTDynamicEps` (ACG or APGD per    ``dynamic_untargeted_acg``
                       candidate eps)                             (ATLA PPO), ``untargeted_acg``
``art_optimal_bb``     :class:`ARTOptimalBB`                      ``Optimal myBB no init``,
                       (``BrendelBethgeAttack``)                  ``optimal_BB``
``art_snooping_fgm``   :class:`ARTSnoopingFGM`                    imitator FGM (5 runs), the
                       (``FastGradientMethod`` on a proxy)        snooping eps-vs-ASR runs
=====================  =========================================  ==============================

What is where:

* :mod:`rlkit.attacks.art.base`: :class:`ARTSettings` (the settings every ART attack has), the
  shared base ``_ARTAttack`` (the victim's kind, the class head, input maps, seeds, statistics)
  and :func:`~rlkit.attacks.art.base.clip_gently`; how the victim becomes an ART classifier, and
  the ``seed`` setting.
* :mod:`rlkit.attacks.art.auto`: :class:`ARTAutoPGD`, :class:`ARTAutoCG` and
  :class:`ARTDynamicEps`, with :class:`AutoSettings` and :class:`DynamicSettings`; the losses.
* :mod:`rlkit.attacks.art.brendel_bethge`: :class:`ARTOptimalBB` and :class:`BBSettings`, and
  :func:`~rlkit.attacks.art.brendel_bethge.load_adversary` (an SB3 adversary zip as a policy).
* :mod:`rlkit.attacks.art.snooping`: :class:`ARTSnoopingFGM` and :class:`SnoopingSettings`.
* :mod:`rlkit.attacks.art_support`: the plumbing they share (class heads, input maps, ART
  classifiers, seeds, the snooping proxy's training).
"""

from .auto import ARTAutoCG, ARTAutoPGD, ARTDynamicEps, AutoSettings, DynamicSettings
from .base import ARTSettings
from .brendel_bethge import ARTOptimalBB, BBSettings
from .snooping import ARTSnoopingFGM, SnoopingSettings

__all__ = [
    "ARTAutoCG",
    "ARTAutoPGD",
    "ARTDynamicEps",
    "ARTOptimalBB",
    "ARTSettings",
    "ARTSnoopingFGM",
    "AutoSettings",
    "BBSettings",
    "DynamicSettings",
    "SnoopingSettings",
]
