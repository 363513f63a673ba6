"""The Sprites-Drag world and the resumable stages of ``ar_drag_distill.py`` (saved and resumed through :class:`rldiff.run_state.RunState`).

Under torchrun each rank draws ``batch_size / world`` clips per step from its own
data generator and gradients are averaged over ranks by the ``parallel`` strategy
(manual all-reduce, DDP or FSDP2) in both stages. Checkpoints hold FULL tensors (gathered from FSDP2 shards on every
rank, written by rank 0) plus every rank's generator state, so a run resumes on
any number of processes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch

from policies.causal_wan import CausalWan
from policies.codecs import PixelCodec
from policies.conditioning import ControlEncoder
from policies.step1 import Distiller, encode_batch, teacher_loss
from policies.teacher import BidirectionalWan, tiny_wan_config
from policies.text_encoder import HashTextEncoder
from rewards.trackers import LucasKanadeTracker
from rldiff import distributed as dist_utils
from rldiff.data import SpritesDrag
from rldiff.parallel import ManualAllReduce, ema_decay_warmup, ema_update_
from rldiff.run_state import RunState


@dataclass
class World:
    """Everything the Sprites-Drag CPU world is made of."""

    train: SpritesDrag
    heldout: SpritesDrag
    codec: PixelCodec
    encoder: ControlEncoder
    tracker: LucasKanadeTracker
    latent_size: tuple[int, int]
    settings: dict

    @property
    def quality(self):
        """The Sprites quality reward (built on first use)."""
        if not hasattr(self, "_quality"):
            from rewards.sprites import SpritesQualityReward

            self._quality = SpritesQualityReward()
        return self._quality

    def describe(self) -> dict:
        return dict(self.settings)


def build_world(cfg) -> World:
    """Data, codec and control encoder of the Sprites-Drag world from a config with the world fields."""
    codec = PixelCodec(factor=cfg.codec_factor)
    encoder = ControlEncoder(codec, HashTextEncoder(dim=cfg.text_dim), mask_channels=4, heatmap_sigma=cfg.heatmap_sigma)
    size = cfg.image_size // cfg.codec_factor
    settings = {k: getattr(cfg, k) for k in ("image_size", "num_frames", "codec_factor", "heatmap_sigma", "text_dim", "dim", "layers", "heads", "window", "sink", "num_steps", "shift")}
    return World(
        SpritesDrag(cfg.image_size, cfg.num_frames),
        SpritesDrag(cfg.image_size, cfg.num_frames, split="heldout"),
        codec,
        encoder,
        LucasKanadeTracker(),
        (size, size),
        settings,
    )


def student_from_teacher(teacher_dir: str | Path, cfg) -> CausalWan:
    """The causal student initialized with the teacher's weights (its control channels included)."""
    return CausalWan.from_pretrained(teacher_dir, extra_in_channels=0, window=cfg.window, sink=cfg.sink)


def local_batch(batch_size: int) -> int:
    """This rank's share of the global ``batch_size``."""
    world = dist_utils.world_size()
    if batch_size % world:
        raise ValueError(f"batch_size={batch_size} must be divisible by the number of processes {world}")
    return batch_size // world


class _Stage:
    """A resumable stage: ``iteration``, ``step()``, ``resume()``, a :class:`RunState` checkpoint every ``checkpoint_every`` iterations."""

    def __init__(self, ckpt_dir: Path, final_dir: Path, checkpoint_every: int, seed: int):
        self.ckpt_dir, self.final_dir, self.checkpoint_every = Path(ckpt_dir), Path(final_dir), checkpoint_every
        self.seed = dist_utils.rank_seed(seed)  # distinct data and noise per rank; rank 0 keeps ``seed``
        self.generator = torch.Generator().manual_seed(self.seed)
        self.iteration = 0

    def run_state(self) -> RunState:
        """What this stage saves: its modules, optimizers and data/noise generator (built once the subclass is set up)."""
        if not hasattr(self, "_run_state"):
            self._run_state = RunState(
                self.ckpt_dir, modules=self.modules(), optimizers=self.optimizers(),
                local_generators={"data": (self.generator, self.seed)}, parallel=self.parallel, seed=self.seed,
            )  # fmt: skip
        return self._run_state

    def modules(self) -> dict[str, torch.nn.Module]:
        raise NotImplementedError

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def save(self) -> None:
        self.run_state().save(self.iteration)

    def resume(self) -> bool:
        state = self.run_state().resume()
        if state is not None:
            self.iteration = int(state["iteration"])
        return state is not None

    def after_step(self) -> None:
        self.iteration += 1
        if self.iteration % self.checkpoint_every == 0:
            self.save()


class TeacherStage(_Stage):
    """Flow-matching fine-tuning of the bidirectional teacher."""

    def __init__(self, world: World, final_dir: Path, ckpt_dir: Path, cfg, parallel=None):
        super().__init__(ckpt_dir, final_dir, cfg.checkpoint_every, cfg.seed)
        self.world, self.batch_size, self.shift = world, local_batch(cfg.batch_size), cfg.shift
        self.config = tiny_wan_config(world.codec.latent_channels, world.encoder.cond_channels, cfg.dim, cfg.heads, cfg.layers, cfg.text_dim, patch=1)
        teacher = BidirectionalWan.from_config(self.config, checkpointing=getattr(cfg, "checkpointing", False))
        self.teacher = dist_utils.broadcast_module_(teacher)  # replicas start from rank 0's weights
        self.parallel = parallel if parallel is not None else ManualAllReduce()
        if not 0.0 <= cfg.teacher_ema < 1.0:
            raise ValueError(f"teacher_ema must be in [0, 1) (0: no EMA), got {cfg.teacher_ema}")
        self.ema_decay = cfg.teacher_ema
        self.ema = copy.deepcopy(self.teacher).requires_grad_(False) if self.ema_decay > 0 else None
        # the teacher's forward is the whole loss computation: DDP / FSDP2 wrap it as it is
        self.runner = self.parallel.wrap_module(self.teacher)
        if self.ema is not None:
            self.ema = self.parallel.shard_like(self.ema, self.teacher)
        self.opt = torch.optim.AdamW(self.teacher.parameters(), lr=cfg.teacher_lr)

    def modules(self):
        return {"teacher": self.teacher} if self.ema is None else {"teacher": self.teacher, "teacher_ema": self.ema}

    def optimizers(self):
        return {"teacher": self.opt}

    def step(self) -> dict[str, float]:
        batch = encode_batch(self.world.train, self.world.codec, self.world.encoder, self.batch_size, self.generator)
        loss = teacher_loss(self.runner, batch, self.generator, self.shift)
        self.opt.zero_grad(set_to_none=True)
        loss["loss"].backward()
        params = list(self.teacher.parameters())
        self.parallel.after_backward(params)
        grad = self.parallel.clip_grad_norm(params, 1.0)
        self.opt.step()
        if self.ema is not None:
            ema_update_(self.ema, self.teacher, ema_decay_warmup(self.ema_decay, self.iteration))
        metrics = {"iteration": float(self.iteration), "loss": float(loss["loss"].detach()), "grad_norm": float(grad)}
        self.after_step()
        return metrics

    def finish(self) -> None:
        final = self.teacher if self.ema is None else self.ema  # the EMA is what gets exported
        state = self.parallel.full_state(final.state_dict().items())  # collective under FSDP2
        if dist_utils.rank() == 0 and not (self.final_dir / "config.json").exists():
            plain = BidirectionalWan.from_config(self.config)  # unsharded
            plain.load_state_dict(state)
            plain.save_pretrained(self.final_dir)
        dist_utils.barrier()  # the other ranks load it next

    def load_final(self) -> BidirectionalWan:
        return BidirectionalWan.from_pretrained(self.final_dir).requires_grad_(False).eval()


class DistillStage(_Stage):
    """DMD + adversarial distillation of the teacher into the causal student."""

    def __init__(self, world: World, teacher: BidirectionalWan, rollout, sigmas: torch.Tensor, final_dir: Path, ckpt_dir: Path, cfg, parallel=None):
        super().__init__(ckpt_dir, final_dir, cfg.checkpoint_every, cfg.seed + 1)
        self.world, self.batch_size, self.cfg = world, local_batch(cfg.batch_size), cfg
        self.teacher_dir = Path(cfg.teacher_path) if cfg.teacher_path else Path(final_dir).parent / "teacher"
        self.student = student_from_teacher(self.teacher_dir, cfg)
        self.distiller = Distiller(
            self.student, teacher, rollout, sigmas,
            lr_generator=cfg.lr_generator, lr_critic=cfg.lr_critic, generator_every=cfg.generator_every, adv_weight=cfg.adv_weight,
            parallel=parallel, critic_checkpointing=getattr(cfg, "checkpointing", False),
        )  # fmt: skip
        self.parallel = self.distiller.parallel

    def modules(self):
        d = self.distiller
        mods = {"student": self.student, "critic": d.critic, "ema": d.ema}
        if d.head is not None:
            mods["head"] = d.head.mlp
        return mods

    def optimizers(self):
        return {"generator": self.distiller.opt_generator, "critic": self.distiller.opt_critic}

    def resume(self) -> bool:
        resumed = super().resume()
        self.distiller.iteration = self.iteration
        return resumed

    def step(self) -> dict[str, float]:
        batch = encode_batch(self.world.train, self.world.codec, self.world.encoder, self.batch_size, self.generator)
        metrics = {"iteration": float(self.iteration), **self.distiller.step(batch, self.generator)}
        self.after_step()
        return metrics

    def finish(self) -> None:
        ema = self.parallel.full_state(self.distiller.ema.state_dict().items())  # collective under FSDP2
        if dist_utils.rank() == 0 and not (self.final_dir / "config.json").exists():
            plain = student_from_teacher(self.teacher_dir, self.cfg)  # unsharded, same config as the EMA
            plain.load_state_dict(ema)
            plain.save_pretrained(self.final_dir)
        dist_utils.barrier()

    def load_final(self) -> CausalWan:
        return CausalWan.from_pretrained(self.final_dir).requires_grad_(False).eval()
