"""Does MENTOR's MoE actor saturate one-sidedly on state cartpole-swingup, and does the authors'
agent (the :mod:`benchmarks.mentor_reference` transcription) do the same?

A small online loop (rlkit's env, replay, episode seeds and update schedule, as
:class:`rlkit.loops.online.OnlineLoop`) drives one subject:

* ``rlkit``: :class:`rlkit.agents.mentor.MentorAgent` built from the config (overrides apply);
* ``reference``: :class:`benchmarks.mentor_reference.ReferenceMENTOR` at the config's sizes,
  started from the rlkit agent's initial weights (:func:`load_rlkit_weights`).

Both act the same way (eval mode; uniform for the seed steps, then ``tanh(mu) + N(0, sigma)``
clamped, sigma from the subject's dormant ratio), and torch's global RNG goes on from where
``rlkit train`` has it after building the agent (the reference's own initialisation draws are
undone), so the rlkit subject retraces ``rlkit train`` and both subjects see the same data
until their float rounding diverges. Every ``--probe-every`` steps it prints, on the states of
the last finished episode (``ep``) and on a fixed probe of replay states (``fix``), the actor's
pre-tanh mean (mean, min, max, share beyond +-3), the critic's dQ/da at the greedy action
(mean, share positive), the norm of the actor-loss (-min Q) gradient, the dormant ratio and
std, and (rlkit subject) dormant units per actor part with what beta would read if the MoE
were counted otherwise (``beta_mixed_out``: its mixed output after the ReLU in place of the
expert output layers). ``--attrib-until STEP`` also splits each update's change of the
pre-tanh mean by actor part. One JSON line per probe goes to ``--out``. Other modes:
``--compare-init`` (step 0 with identical weights, rlkit against the transcription) and
``--probe-run DIR`` (a trained run's final agent on one greedy episode).

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python -m benchmarks.mentor_saturation \\
        --subject reference --steps 6000 --out /tmp/sat/reference.jsonl
    ... --subject rlkit --steps 6000 agent.kwargs.pre_tanh_penalty=0.001
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.mentor_reference import ReferenceMENTOR, load_rlkit_weights
from rlkit.agent import build_agent
from rlkit.agents.dormant import relu_fed_linears
from rlkit.config import load_config
from rlkit.envs import make_env
from rlkit.loops.online import build_replay
from rlkit.observations import as_observation
from rlkit.registry import AGENTS
from rlkit.seeding import seed_everything

CONFIG = "configs/dmc/mentor_cartpole_swingup_state.yaml"


class Subject:
    """One agent behind a common face: actor parts, critic, act, update."""

    def __init__(self, kind: str, agent: Any, reference: ReferenceMENTOR | None) -> None:
        self.kind, self.agent, self.ref = kind, agent, reference

    @property
    def actor(self) -> nn.Module:
        return self.ref.actor if self.ref is not None else self.agent.actor

    @property
    def critic(self) -> nn.Module:
        return self.ref.critic if self.ref is not None else self.agent.critic

    def mu(self, obs: torch.Tensor) -> torch.Tensor:
        """Pre-tanh mean (B, A), in the current mode."""
        if self.ref is None:
            return self.agent.actor(obs)
        actor = self.ref.actor
        x, _ = actor.moe(actor.policy1(actor.trunk(obs)))
        return actor.policy2(x)

    def stddev(self) -> float:
        return self.ref.dormant_stddev if self.ref is not None else self.agent.stddev

    def beta(self) -> float:
        return self.ref.dormant_ratio if self.ref is not None else self.agent.beta

    @torch.no_grad()
    def act(self, obs: np.ndarray, step: int) -> np.ndarray:
        was = self.actor.training
        self.actor.eval()
        mean = torch.tanh(self.mu(torch.as_tensor(obs[None]).float()))
        self.actor.train(was)
        if step < self.agent.num_expl_steps:
            mean = torch.empty_like(mean).uniform_(-1.0, 1.0)
        else:
            mean = (mean + torch.randn_like(mean) * self.stddev()).clamp(-1.0, 1.0)
        return self.agent.to_env_action(mean.numpy())[0]

    def update(self, batch: Any, step: int) -> dict[str, float]:
        if self.ref is None:
            return self.agent.update(batch, step)
        action = self.agent.to_unit_action(batch.action)
        return self.ref.update(
            batch.obs, action, batch.reward, batch.discount, batch.next_obs, step
        )

    def parts(self) -> dict[str, list[nn.Parameter]]:
        """Actor parameters by part: trunk, input, experts, gate, head (rlkit names)."""
        a = self.actor
        if self.ref is not None:
            named = {
                "trunk": a.trunk,
                "input": a.policy1,
                "experts": a.moe.experts,
                "gate": a.moe.gate,
                "head": a.policy2,
            }
        else:
            mid = a.middle
            named = {"trunk": a.trunk, "input": a.input, "head": a.head}
            if hasattr(mid, "experts"):
                named |= {"experts": mid.experts, "gate": mid.gate}
            else:
                named["middle"] = mid
        return {k: list(m.parameters()) for k, m in named.items()}


def probe(subject: Subject, obs: torch.Tensor) -> dict[str, Any]:
    """Pre-tanh mean, dQ/da and the actor-loss gradient (eval mode, no noise, no RNG)."""
    actor, critic = subject.actor, subject.critic
    was_a, was_c = actor.training, critic.training
    actor.eval()
    critic.eval()
    try:
        mu = subject.mu(obs)
        action = torch.tanh(mu)
        a_leaf = action.detach().requires_grad_(True)
        q = torch.min(*critic(obs, a_leaf))
        (dq_da,) = torch.autograd.grad(q.sum(), a_leaf)
        loss = -torch.min(*critic(obs, action)).mean()
        groups = subject.parts()
        params = [p for ps in groups.values() for p in ps]
        grads = torch.autograd.grad(loss, params, allow_unused=True)  # sparse: unused experts
        norms, i = {}, 0
        for name, ps in groups.items():
            g = grads[i : i + len(ps)]
            i += len(ps)
            norms[name] = float(
                sum(float((x.double() ** 2).sum()) for x in g if x is not None) ** 0.5
            )
        m = mu.detach()[:, 0]
        return {
            "mu_mean": float(m.mean()),
            "mu_min": float(m.min()),
            "mu_max": float(m.max()),
            "neg3": float((m < -3).float().mean()),
            "pos3": float((m > 3).float().mean()),
            "dqda_mean": float(dq_da.mean()),
            "dqda_pos": float((dq_da > 0).float().mean()),
            "dLdmu_abs": float((dq_da * (1 - action.detach() ** 2)).abs().mean()),
            "grad": norms,
            "grad_total": float(np.sqrt(sum(v**2 for v in norms.values()))),
        }
    finally:
        actor.train(was_a)
        critic.train(was_c)


@torch.no_grad()
def dormant_by_part(subject: Subject, obs: torch.Tensor) -> dict[str, list[int]]:
    """Dormant neurons and neurons per actor part, [dormant, total], as the agent counts them
    (:func:`rlkit.agents.dormant.dormant_ratio`: post-ReLU for ReLU-fed layers, every expert on
    every row) but in eval mode (no dropout draw). rlkit subject only."""
    actor = subject.agent.actor
    fed = relu_fed_linears(actor)
    found: dict[str, list[int]] = {}
    handles = []

    def hook(part: str) -> Any:
        def keep(module: nn.Module, _inputs: Any, out: torch.Tensor) -> None:
            views = {part: out.clamp(min=0) if id(module) in fed else out}
            if part == "experts_out":  # also as if each expert's output were ReLU-fed
                views["(experts_out_relu)"] = out.clamp(min=0)
            for key, value in views.items():
                activity = value.abs().mean(dim=0)
                acc = found.setdefault(key, [0, 0])
                acc[0] += int((activity < 0.025 * activity.mean()).sum())
                acc[1] += activity.numel()

        return keep

    for name, module in actor.named_modules():
        if isinstance(module, nn.Linear):
            part = name.split(".")[0]
            if name.startswith("middle.experts."):  # hidden (post-ReLU) and output layers
                part = "experts_out" if name.endswith(".2") else "experts_hidden"
            elif name.startswith("middle.gate."):
                part = "gate"
            handles.append(module.register_forward_hook(hook(part)))
    if not isinstance(actor.middle, nn.Linear):  # not counted by the agent: the mixed output
        mixed = hook("(moe_out_relu)")
        handles.append(
            actor.middle.register_forward_hook(lambda m, i, o: mixed(m, i, F.relu(o[0])))
        )
    was = actor.training
    actor.eval()
    try:
        with subject.agent.dense_moe():
            actor(obs)
    finally:
        actor.train(was)
        for h in handles:
            h.remove()
    return found


@torch.no_grad()
def eval_mu(subject: Subject, obs: torch.Tensor) -> torch.Tensor:
    """Pre-tanh mean (N,) in eval mode (first action dimension)."""
    was = subject.actor.training
    subject.actor.eval()
    try:
        return subject.mu(obs)[:, 0].clone()
    finally:
        subject.actor.train(was)


def attributed_update(
    subject: Subject, batch: Any, step: int, obs: torch.Tensor, totals: dict[str, list[float]]
) -> dict[str, float]:
    """One update, and how much each actor part's step moved the probe's pre-tanh mean: the
    change with only that part's new weights, summed into ``totals[part] = [common, spread]``
    (mean over the probe, and mean absolute deviation from that mean)."""
    parts = subject.parts() | {"all": list(subject.actor.parameters())}
    old = {id(p): p.detach().clone() for p in parts["all"]}
    mu0 = eval_mu(subject, obs)
    metrics = subject.update(batch, step)
    new = {id(p): p.detach().clone() for p in parts["all"]}
    with torch.no_grad():
        for name, params in parts.items():
            for p in parts["all"]:
                p.copy_(old[id(p)])
            for p in params:
                p.copy_(new[id(p)])
            d = eval_mu(subject, obs) - mu0
            common = float(d.mean())
            acc = totals.setdefault(name, [0.0, 0.0])
            acc[0] += common
            acc[1] += float((d - common).abs().mean())
        for p in parts["all"]:
            p.copy_(new[id(p)])
    return metrics


def compare_init(overrides: list[str], seed: int) -> None:
    """Step 0 with identical weights: rlkit's actor against the transcription's (pre-tanh mean,
    actor-loss gradient per parameter), the MoE's output scale against the plain middle layer's,
    and the weight gap after one update from the same batch and torch seed."""
    from benchmarks.mentor_reference import rlkit_to_reference

    def build(extra: list[str]) -> Any:
        config = load_config(CONFIG, [f"seed={seed}", *overrides, *extra])
        seed_everything(config.seed)
        env = make_env(config.env)
        agent = build_agent(
            AGENTS.get(config.agent.name), config, env.observation_space, env.action_space
        )
        return config, env, agent

    config, env, agent = build([])
    kw = config.agent.kwargs
    ref = ReferenceMENTOR(
        tuple(env.observation_space.shape),
        int(np.prod(env.action_space.shape)),
        lr=config.agent.learning_rate,
        feature_dim=int(kw["feature_dim"]),
        hidden_dim=int(config.agent.net_arch[0]),
        moe_gate_dim=int(kw["gate_hidden"]),
        moe_hidden_dim=int(kw["expert_hidden"]),
    )
    load_rlkit_weights(ref, agent)
    buffer = build_replay(config, env, agent.schedule)
    obs: Any = as_observation(env.reset(seed=0)[0])
    gen = np.random.default_rng(0)
    for _ in range(1000):  # random-action states, as the seed steps collect them
        action = gen.uniform(-1, 1, env.action_space.shape).astype(np.float32)
        nxt, reward, term, trunc, _ = env.step(action)
        stored: Any = as_observation(nxt)
        buffer.add(obs, action, float(reward), stored, bool(term), bool(trunc))
        obs = as_observation(nxt) if not (term or trunc) else as_observation(env.reset()[0])
    batch = buffer.sample(int(kw["batch_size"]), np.random.default_rng(1))
    x = batch.obs.float()
    mine, theirs = Subject("rlkit", agent, None), Subject("reference", agent, ref)
    rows = {}
    for name, sub in (("rlkit", mine), ("authors", theirs)):
        sub.actor.eval()
        mu = sub.mu(x)
        loss = -torch.min(*sub.critic(x, torch.tanh(mu))).mean()
        named = dict(sub.actor.named_parameters())
        grads = torch.autograd.grad(loss, list(named.values()), allow_unused=True)
        g = {k: (v if v is not None else torch.zeros_like(p)) for (k, p), v in
             zip(named.items(), grads, strict=True)}  # fmt: skip
        rows[name] = (mu.detach(), g)
        sub.actor.train()
    mapped = rlkit_to_reference("actor", rows["rlkit"][1])
    grad_gap = max(float((mapped[k] - rows["authors"][1][k]).abs().max()) for k in mapped)
    mu_r = rows["rlkit"][0]
    mu_gap = float((mu_r - rows["authors"][0]).abs().max())
    print(f"pre-tanh mean at init: max |rlkit - authors| {mu_gap:.1e}; "
          f"actor-loss grads: max |diff| {grad_gap:.1e}")  # fmt: skip
    with torch.no_grad():
        h = F.relu(agent.actor.input(agent.actor.trunk(x)))
        out, _ = agent.actor.middle.eval()(h)
        agent.actor.middle.train()
    _, _, plain = build(["agent.kwargs.moe=false"])
    with torch.no_grad():
        hp = F.relu(plain.actor.input(plain.actor.trunk(x)))
        outp = plain.actor.middle(hp)
        mu_p = plain.actor(x)
    ratio = float(out.norm(dim=1).mean() / h.norm(dim=1).mean())
    ratio_p = float(outp.norm(dim=1).mean() / hp.norm(dim=1).mean())
    spread, spread_p = float(mu_r.std()), float(mu_p.std())
    print(f"middle-layer output/input norm at init: MoE {ratio:.3f}, plain Linear {ratio_p:.3f}; "
          f"pre-tanh mean std over states: MoE {spread:.4f}, plain {spread_p:.4f}")  # fmt: skip
    torch.manual_seed(7)
    agent.update(batch, 2000)
    torch.manual_seed(7)
    ref.update(batch.obs, agent.to_unit_action(batch.action), batch.reward, batch.discount,
               batch.next_obs, 2000)  # fmt: skip
    gaps = {}
    for role, net in ref.networks().items():
        a = rlkit_to_reference(role, getattr(agent, role).state_dict())
        b = net.state_dict()
        gaps[role] = max((float((a[k].float() - b[k].float()).abs().max()) for k in b), default=0.0)
    print(
        "after one update, max |weight diff| per network:", {k: f"{v:.1e}" for k, v in gaps.items()}
    )
    env.close()


def probe_run(run: Path) -> None:
    """Print :func:`probe` of a trained run's final agent on one greedy episode (eval seed)."""
    config = load_config(run / "config.yaml")
    env = make_env(config.env)
    agent: Any = build_agent(
        AGENTS.get(config.agent.name), config, env.observation_space, env.action_space
    )
    agent.load(run / "final")
    obs, states, ret, done = env.reset(seed=config.seed + 10_000)[0], [], 0.0, False
    while not done:
        states.append(np.asarray(obs, dtype=np.float32))
        obs, reward, terminated, truncated, _ = env.step(agent.act(obs[None], 0)[0])
        ret, done = ret + float(reward), bool(terminated or truncated)
    env.close()
    row = probe(Subject("rlkit", agent, None), torch.as_tensor(np.stack(states)))
    print(json.dumps({"run": str(run), "return": ret, **row}))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--subject", choices=("rlkit", "reference"), default="rlkit")
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--probe-every", type=int, default=500)
    p.add_argument("--config", default=CONFIG)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--attrib-until", type=int, default=0, help="attribute drift to parts")
    p.add_argument("--compare-init", action="store_true", help="step-0 comparison only")
    p.add_argument("--probe-run", type=Path, default=None, help="probe a run's final agent")
    p.add_argument("overrides", nargs="*", help="config overrides, key.sub=value")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.probe_run is not None:
        probe_run(args.probe_run)
        return
    if args.compare_init:
        compare_init(args.overrides, args.seed)
        return
    config = load_config(args.config, [f"seed={args.seed}", *args.overrides])
    seed_everything(config.seed)
    env = make_env(config.env)
    agent: Any = build_agent(
        AGENTS.get(config.agent.name), config, env.observation_space, env.action_space
    )
    reference = None
    torch_rng = torch.get_rng_state()  # the loop's stream goes on from here for both subjects
    if args.subject == "reference":
        kw = config.agent.kwargs
        reference = ReferenceMENTOR(
            tuple(env.observation_space.shape),
            int(np.prod(env.action_space.shape)),
            lr=float(config.agent.learning_rate or 1e-4),
            feature_dim=int(kw.get("feature_dim", 50)),
            hidden_dim=int((config.agent.net_arch or [1024])[0]),
            num_experts=int(kw.get("num_experts", 16)),
            top_k=int(kw.get("top_k", 4)),
            moe_gate_dim=int(kw.get("gate_hidden", 256)),
            moe_hidden_dim=int(kw.get("expert_hidden", 256)),
        )
        load_rlkit_weights(reference, agent)
    subject = Subject(args.subject, agent, reference)
    buffer = build_replay(config, env, agent.schedule)
    sampler = np.random.default_rng(config.seed)
    torch.set_rng_state(torch_rng)  # (the reference's own init drew from it)
    out = args.out.open("w") if args.out else None

    episode, ep_states, last_ep = 0, [], None
    fixed: torch.Tensor | None = None
    obs: Any = as_observation(env.reset(seed=config.seed * 1_000_003)[0])
    metrics: dict[str, float] = {}
    totals: dict[str, list[float]] = {}
    start = time.time()
    for step in range(1, args.steps + 1):
        action = np.asarray(subject.act(obs, step - 1), dtype=env.action_space.dtype)
        ep_states.append(np.asarray(obs, dtype=np.float32))
        stepped, reward, terminated, truncated, _ = env.step(action)
        next_obs: Any = as_observation(stepped)
        buffer.add(obs, action, float(reward), next_obs, bool(terminated), bool(truncated))
        obs = next_obs
        if terminated or truncated:
            last_ep = torch.as_tensor(np.stack(ep_states))
            ep_states, episode = [], episode + 1
            obs = as_observation(env.reset(seed=config.seed * 1_000_003 + episode)[0])
        if fixed is None and step >= agent.num_expl_steps:
            fixed = buffer.sample(1024, np.random.default_rng(999)).obs.float()
        if agent.schedule.due(step):
            batch = buffer.sample(agent.schedule.batch_size, sampler)
            if fixed is not None and step <= args.attrib_until:
                metrics = attributed_update(subject, batch, step, fixed, totals)
            else:
                metrics = subject.update(batch, step)
        if step % args.probe_every == 0 and fixed is not None:
            row: dict[str, Any] = {"step": step, "beta": subject.beta(), "std": subject.stddev()}
            row["fix"] = probe(subject, fixed)
            if last_ep is not None:
                row["ep"] = probe(subject, last_ep.float())
            row["aux"] = float(metrics.get("aux_loss", 0.0))
            if subject.ref is None:
                d = row["dormant"] = dormant_by_part(subject, fixed)
                counted = [k for k in d if not k.startswith("(")]

                def ratio(keys: list[str], d: dict[str, list[int]] = d) -> float:
                    return sum(d[k][0] for k in keys) / sum(d[k][1] for k in keys)

                row["beta_probe"] = ratio(counted)
                if "experts_out" in d:  # what beta would be if the MoE were counted otherwise
                    rest = [k for k in counted if k != "experts_out"]
                    row["beta_experts_relu"] = ratio([*rest, "(experts_out_relu)"])
                    row["beta_mixed_out"] = ratio([*rest, "(moe_out_relu)"])
                    row["beta_moe_as_layer"] = ratio(["trunk", "input", "(moe_out_relu)", "head"])
                betas = {k: round(v, 3) for k, v in row.items() if k.startswith("beta_")}
                print("       dormant [n, of]:", d, betas, flush=True)
            row["wall"] = round(time.time() - start, 1)
            f, e = row["fix"], row.get("ep", row["fix"])
            print(
                f"{step:6d} beta {row['beta']:.3f} std {row['std']:.3f} | fix mu "
                f"{f['mu_mean']:+7.2f} [{f['mu_min']:+7.2f},{f['mu_max']:+7.2f}] "
                f"<-3 {f['neg3']:.2f} >3 {f['pos3']:.2f} dQda {f['dqda_mean']:+.3f} "
                f"(+{f['dqda_pos']:.2f}) |g| {f['grad_total']:.2e} | ep mu "
                f"{e['mu_mean']:+7.2f} [{e['mu_min']:+7.2f},{e['mu_max']:+7.2f}] "
                f"{row['wall']:.0f}s",
                flush=True,
            )
            if totals:
                row["attrib"] = {k: [round(v[0], 4), round(v[1], 4)] for k, v in totals.items()}
                print("       drift by part [common, spread]:", row["attrib"], flush=True)
            if out is not None:
                out.write(json.dumps(row) + "\n")
                out.flush()
    env.close()


if __name__ == "__main__":
    main()
