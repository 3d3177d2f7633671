"""Skull base, face and the lowest brain: sinuses, orbits, petrous bones."""

from __future__ import annotations

from ivcontrast.synth.anatomy.base import Z_ORBIT_FLOOR, Z_ORBIT_TOP, BuilderBase
from ivcontrast.synth.geometry import Capsule
from ivcontrast.synth.physiology import LABEL


class HeadParts(BuilderBase):
    def head(self) -> None:
        """Skull base, face and the lowest brain: sinuses, orbits, petrous bones."""
        p, rng = self.p, self.rng
        yn = self.yn
        hy = yn - 10
        ha = p.neck_a + 20
        hb = p.neck_b + 38

        def kn(ns: list[tuple[float, float, float, float, float]]) -> list[tuple[float, ...]]:
            return [(self.z(n), x, y, a, b) for n, x, y, a, b in ns]

        # Skull vault (cortical), brain inside; posterior fossa.
        self.ellipse(
            "bone_cortical",
            "cortical",
            kn(
                [
                    (205, 0, hy + 30, 0.5, 0.5),
                    (215, 0, hy + 30, ha * 0.7, hb * 0.5),
                    (240, 0, hy + 24, ha * 0.92, hb * 0.68),
                    (270, 0, hy + 16, ha * 0.97, hb * 0.78),
                    (300, 0, hy + 5, ha, hb * 0.92),
                    (330, 0, hy + 5, ha * 0.95, hb * 0.9),
                ]
            ),
        )
        self.ellipse(
            "brain",
            "brain",
            kn(
                [
                    (208, 0, hy + 30, 0.5, 0.5),
                    (216, 0, hy + 30, ha * 0.7 - 5, hb * 0.5 - 5),
                    (240, 0, hy + 24, ha * 0.92 - 5.5, hb * 0.68 - 5.5),
                    (270, 0, hy + 16, ha * 0.97 - 6, hb * 0.78 - 6),
                    (300, 0, hy + 5, ha - 6, hb * 0.92 - 6),
                    (330, 0, hy + 5, ha * 0.95 - 6, hb * 0.9 - 6),
                ]
            ),
        )
        # Petrous bones, dense and oblique (beam-hardening bands run between them).
        for side in (-1.0, 1.0):
            kn_p = [
                (self.z(220), side * 36.0, hy + 12, 0.5, 0.5),
                (self.z(224), side * 36.0, hy + 12, 17.0, 6.0),
                (self.z(234), side * 36.0, hy + 12, 19.0, 7.0),
                (self.z(238), side * 36.0, hy + 12, 0.5, 0.5),
            ]
            self.ellipse("bone_cortical", "cortical", kn_p, angle=side * 0.75)

        def petrous(z: float) -> tuple[float, float, float, float] | None:
            if not self.z(222) <= z <= self.z(236):
                return None
            return (-40.0, hy + 2, 40.0, hy + 2)

        self.dense_pairs.append((petrous, rng.uniform(30, 70)))
        self.add(
            Capsule.make(
                LABEL["bone_cortical"],
                "cortical",
                [
                    (self.z(200), 0.0, hy + 2, 0.0, hy - 10, 5.0),
                    (self.z(235), 0.0, hy - 2, 0.0, hy - 18, 6.0),
                ],
            )
        )
        # Maxillary sinuses with bony walls, nasal cavity with septum, sphenoid sinus.
        for side in (-1.0, 1.0):
            sx, sy = side * 24.0, hy - hb * 0.55
            walls = kn(
                [
                    (208, sx, sy, 0.5, 0.5),
                    (214, sx, sy, 16, 17),
                    (236, sx, sy, 18, 19),
                    (246, sx, sy, 0.5, 0.5),
                ]
            )
            self.ellipse("bone_cortical", "cortical", walls)
            self.ellipse(
                "airway",
                "air",
                [(k[0], k[1], k[2], max(k[3] - 2.0, 0.3), max(k[4] - 2.0, 0.3)) for k in walls],
            )
        nasal = kn(
            [
                (206, 0, hy - hb * 0.62, 0.5, 0.5),
                (212, 0, hy - hb * 0.6, 11, 22),
                (245, 0, hy - hb * 0.62, 10, 20),
                (255, 0, hy - hb * 0.65, 0.5, 0.5),
            ]
        )
        self.ellipse(
            "mucosa", "mucosa", [(k[0], k[1], k[2], k[3] + 2.5, k[4] + 2.5) for k in nasal]
        )
        self.ellipse("airway", "air", nasal)
        self.add(
            Capsule.make(
                LABEL["bone_cortical"],
                "cortical",
                [
                    (self.z(206), 0.0, hy - hb * 0.4, 0.0, hy - hb * 0.8, 1.0),
                    (self.z(255), 0.0, hy - hb * 0.4, 0.0, hy - hb * 0.8, 1.0),
                ],
            )
        )
        for side in (-1.0, 1.0):
            self.ellipse(
                "mucosa",
                "mucosa",
                kn(
                    [
                        (212, side * 7.0, hy - hb * 0.6, 0.5, 0.5),
                        (222, side * 7.0, hy - hb * 0.6, 3.5, 12),
                        (232, side * 7.0, hy - hb * 0.6, 0.5, 0.5),
                    ]
                ),
            )
        self.ellipse(
            "airway",
            "air",
            kn(
                [
                    (226, 0, hy - 22, 0.5, 0.5),
                    (232, 0, hy - 22, 12, 10),
                    (244, 0, hy - 24, 0.5, 0.5),
                ]
            ),
        )
        # Orbits: fat cone, globe, lens; lateral orbital walls.
        for side in (-1.0, 1.0):
            ox, oy = side * 31.0, hy - hb * 0.7
            self.ellipse(
                "bone_cortical",
                "cortical",
                kn(
                    [
                        (Z_ORBIT_FLOOR - 2, ox, oy + 10, 0.5, 0.5),
                        (Z_ORBIT_FLOOR + 4, ox, oy + 10, 19, 24),
                        (Z_ORBIT_TOP - 4, ox, oy + 10, 19, 24),
                        (Z_ORBIT_TOP + 2, ox, oy + 10, 0.5, 0.5),
                    ]
                ),
            )
            self.ellipse(
                "fat",
                "fat",
                kn(
                    [
                        (Z_ORBIT_FLOOR, ox, oy + 10, 0.5, 0.5),
                        (Z_ORBIT_FLOOR + 5, ox, oy + 10, 17.8, 22.8),
                        (Z_ORBIT_TOP - 5, ox, oy + 10, 17.8, 22.8),
                        (Z_ORBIT_TOP, ox, oy + 10, 0.5, 0.5),
                    ]
                ),
            )
            gz = (Z_ORBIT_FLOOR + Z_ORBIT_TOP) / 2
            self.ellipse(
                "globe",
                "globe",
                kn(
                    [
                        (gz - 12, ox, oy, 0.5, 0.5),
                        (gz - 8, ox, oy, 9, 9),
                        (gz, ox, oy, 12, 12),
                        (gz + 8, ox, oy, 9, 9),
                        (gz + 12, ox, oy, 0.5, 0.5),
                    ]
                ),
            )
            self.ellipse(
                "lens",
                "lens",
                kn(
                    [
                        (gz - 4, ox, oy - 9, 0.5, 0.5),
                        (gz, ox, oy - 9, 4.5, 2),
                        (gz + 4, ox, oy - 9, 0.5, 0.5),
                    ]
                ),
            )
        # Dural venous sinuses (transverse and sigmoid) behind the petrous bones.
        for side in (-1.0, 1.0):
            pts = [
                (side * 30.0, yn + p.neck_b * 0.35, self.z(232)),
                (side * 42.0, hy + 40, self.z(240)),
                (side * 20.0, hy + hb * 0.8, self.z(248)),
                (0.0, hy + hb * 0.88, self.z(252)),
            ]
            self.tube("dural_sinus", "blood_jugular", pts, [5.0, 4.5, 4.0, 4.0])
