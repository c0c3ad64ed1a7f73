"""Gradient checkpointing of the encoder: peak memory and step time with and without.

One config builds deform_ext's Deformable DETR twice, with ``encoder.num_cp=0`` and
``encoder.num_cp=<all encoder layers>``, same weights; both run the same training
steps (forward, backward, AdamW) on the same random batch, alternating, in one
process. Prints the median ms per step, the peak memory of one step
(bench_utils.peak_mib) and the ratios, and the largest gradient difference after one
step (checkpointing recomputes the same numbers, so it should be ~0).

    python benchmarks/grad_checkpoint.py [--config CFG] [--batch 2] [--size 256 256]
                                         [--iters 5] [--device cpu|cuda]
"""
import copy

import torch
from bench_utils import median_ms, peak_mib
from mmengine.config import Config
from train_speed import make_batch, run_line, step, training_parser

# train_speed has put the repository root on sys.path
from deform_ext.testing import build_model, total_loss, without_init_cfg


def build_twins(config: str, device: str):
    """(without, with) checkpointing: the same model and weights, num_cp 0 and all."""
    model_cfg = without_init_cfg(Config.fromfile(config).model.to_dict())
    num_layers = model_cfg['encoder']['num_layers']
    models = []
    for num_cp in (0, num_layers):
        cfg = copy.deepcopy(model_cfg)
        cfg['encoder']['num_cp'] = num_cp
        models.append(build_model(cfg))
    models[1].load_state_dict(models[0].state_dict())
    return [m.to(device).train() for m in models], num_layers


def max_grad_difference(models, data) -> float:
    """Largest |grad| difference over all parameters after one backward each."""
    grads = []
    for model in models:
        torch.manual_seed(2)  # the attention's dropout draws alike in both
        model.zero_grad(set_to_none=True)
        total_loss(model(**data, mode='loss')).backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    return max((grads[0][n] - grads[1][n]).abs().max().item() for n in grads[0])


def main(argv=None):
    args = training_parser(__doc__.splitlines()[0], iters=5).parse_args(argv)

    (plain, checkpointed), num_layers = build_twins(args.config, args.device)
    data = make_batch(plain, args.batch, args.size)
    difference = max_grad_difference((plain, checkpointed), data)
    models = {'num_cp=0': plain, f'num_cp={num_layers}': checkpointed}
    optimizers = {k: torch.optim.AdamW(m.parameters(), lr=1e-4) for k, m in models.items()}
    steps = {name: (lambda m=m, o=optimizers[name]: step(m, o, data))
             for name, m in models.items()}
    # median over alternating steps; the warm-up creates the optimizer state
    times = dict(zip(steps, median_ms(list(steps.values()), args.iters, 1, args.device)))
    peaks = {name: peak_mib(call, args.device) for name, call in steps.items()}

    print(run_line(args))
    print(f'{"encoder checkpointing":24s} {"ms/step":>8s} {"peak MiB":>9s}')
    for name in models:
        print(f'{name:24s} {times[name]:8.1f} {peaks[name]:9.1f}')
    base, cp = list(models)
    print(f'{"ratio (cp / none)":24s} {times[cp] / times[base]:7.2f}x '
          f'{peaks[cp] / peaks[base]:8.2f}x')
    print(f'max |grad difference| after one step: {difference:.3g}')


if __name__ == '__main__':
    main()
