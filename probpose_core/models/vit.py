"""Plain-PyTorch Vision Transformer backbone (ViTPose / ProbPose flavour, no class token).

Attribute names follow mmpretrain's ``VisionTransformer`` so that an official MMPose-1.x
state_dict (``backbone.*`` keys) loads with no missing or unexpected keys:
``pos_embed (1, T, C)``, ``patch_embed.projection`` (conv k16 s16, padding 2, bias),
``layers.N.{ln1, attn.qkv, attn.proj, ln2, ffn.layers.0.0, ffn.layers.1}`` and the final ``ln1``.
Pre-norm blocks ``x + attn(ln1(x))``, ``x + ffn(ln2(x))``; LayerNorm eps 1e-6, exact GELU,
qkv bias, attention scale head_dim^-0.5, drop-path rates ``linspace(0, drop_path, depth)``.

Tokens are laid out row-major over the patch grid; with patch padding 2 an input of
256x192 (H x W) gives a 16x12 grid (the last 2 image rows/columns are not seen, as in the
original). ``pos_embed`` belongs to the grid of ``input_size``; other input sizes get it
resized bicubically (align_corners=False). Output: features (N, C, Hp, Wp).
"""
import torch
import torch.nn.functional as F
from torch import nn

#: ViT sizes: name -> (embed_dim, depth, num_heads). ViTPose's "S" uses 12 heads of 32.
VIT_SIZES = {"t": (192, 12, 3), "s": (384, 12, 12), "b": (768, 12, 12)}
LN_EPS = 1e-6


def patch_grid(input_size, patch_size: int = 16, padding: int = 2) -> tuple[int, int]:
    """Token grid (Hp, Wp) of an input ``(W, H)``: ``(H + 2 pad - patch) // patch + 1``."""
    w, h = input_size
    return (h + 2 * padding - patch_size) // patch_size + 1, (w + 2 * padding - patch_size) // patch_size + 1


def resize_pos_embed(pos_embed: torch.Tensor, src_grid, dst_grid) -> torch.Tensor:
    """Bicubic resize of ``pos_embed (1, Hs*Ws, C)`` from grid ``src_grid`` to ``dst_grid``."""
    if tuple(src_grid) == tuple(dst_grid):
        return pos_embed
    c = pos_embed.shape[-1]
    grid = pos_embed.reshape(1, src_grid[0], src_grid[1], c).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=tuple(dst_grid), mode="bicubic", align_corners=False)
    return grid.flatten(2).transpose(1, 2)


class DropPath(nn.Module):
    """Stochastic depth: drops a residual branch per sample while training."""

    def __init__(self, rate: float = 0.0):
        super().__init__()
        self.rate = float(rate)

    def forward(self, x):
        if not self.training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep


class PatchEmbed(nn.Module):
    def __init__(self, embed_dim: int, patch_size: int = 16, padding: int = 2):
        super().__init__()
        self.projection = nn.Conv2d(3, embed_dim, patch_size, stride=patch_size, padding=padding, bias=True)

    def forward(self, images):
        """images (N, 3, H, W) -> tokens (N, Hp*Wp, C), grid (Hp, Wp)."""
        x = self.projection(images)
        return x.flatten(2).transpose(1, 2), x.shape[2:]


class Attention(nn.Module):
    def __init__(self, embed_dim: int, num_heads: int):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(embed_dim, 3 * embed_dim, bias=True)
        self.proj = nn.Linear(embed_dim, embed_dim)

    def forward(self, x):
        n, t, c = x.shape
        # qkv features are laid out (3, heads, head_dim)
        q, k, v = self.qkv(x).reshape(n, t, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)  # default scale head_dim^-0.5
        return self.proj(x.transpose(1, 2).reshape(n, t, c))


class FFN(nn.Module):
    """``layers.0 = (Linear, GELU, Dropout)``, ``layers.1 = Linear`` (mmcv's FFN key layout)."""

    def __init__(self, embed_dim: int, hidden_dim: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Sequential(nn.Linear(embed_dim, hidden_dim), nn.GELU(), nn.Dropout(0.0)),
            nn.Linear(hidden_dim, embed_dim),
        )

    def forward(self, x):
        return self.layers(x)


class EncoderLayer(nn.Module):
    def __init__(self, embed_dim: int, num_heads: int, mlp_ratio: float, drop_path: float):
        super().__init__()
        self.ln1 = nn.LayerNorm(embed_dim, eps=LN_EPS)
        self.attn = Attention(embed_dim, num_heads)
        self.ln2 = nn.LayerNorm(embed_dim, eps=LN_EPS)
        self.ffn = FFN(embed_dim, int(embed_dim * mlp_ratio))
        self.drop_path = DropPath(drop_path)

    def forward(self, x):
        x = x + self.drop_path(self.attn(self.ln1(x)))
        return x + self.drop_path(self.ffn(self.ln2(x)))


class VisionTransformer(nn.Module):
    """ViT backbone: images (N, 3, H, W) -> features (N, embed_dim, Hp, Wp)."""

    def __init__(self, embed_dim: int = 384, depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0,
                 drop_path: float = 0.1, input_size=(192, 256), patch_size: int = 16, patch_padding: int = 2):
        super().__init__()
        self.embed_dim = embed_dim
        self.patch_size, self.patch_padding = patch_size, patch_padding
        self.grid = patch_grid(input_size, patch_size, patch_padding)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid[0] * self.grid[1], embed_dim))
        self.patch_embed = PatchEmbed(embed_dim, patch_size, patch_padding)
        rates = [drop_path * i / (depth - 1) if depth > 1 else 0.0 for i in range(depth)]  # linspace(0, rate, depth)
        self.layers = nn.ModuleList(EncoderLayer(embed_dim, num_heads, mlp_ratio, r) for r in rates)
        self.ln1 = nn.LayerNorm(embed_dim, eps=LN_EPS)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.apply(_init_weights)

    def forward(self, images):
        x, grid = self.patch_embed(images)
        x = x + resize_pos_embed(self.pos_embed, self.grid, tuple(grid))
        for layer in self.layers:
            x = layer(x)
        x = self.ln1(x)
        return x.transpose(1, 2).reshape(x.shape[0], self.embed_dim, grid[0], grid[1])


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
