"""Body-size normalisers for the SUV types: weight, lean body mass, surface area, ideal weight.

Every SUV type divides the activity concentration by the injected dose per unit of some body
measure, so ``SUV_type = SUVbw × normaliser(type) / weight``. The formulas are the ones named in
DICOM PS3.16 (CID 85 "SUV Units") and the PERCIST/EANM literature:

* lean body mass, James (1976): men ``1.10 W − 128 (W/H)²``, women ``1.07 W − 148 (W/H)²``
  (W in kg, H in cm);
* lean body mass, Janmahasatian et al. (2005): men ``9270 W / (6680 + 216 BMI)``, women
  ``9270 W / (8780 + 244 BMI)``;
* body surface area, Du Bois and Du Bois (1916): ``0.007184 W^0.425 H^0.725`` m²;
* ideal body weight (Devine): men ``48.0 + 1.06 (H − 152)``, women ``45.5 + 0.91 (H − 152)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from service.errors import SuvError


class SuvType(StrEnum):
    """What the activity is normalised by."""

    #: Body weight (g/mL); the default and what PET vendors mean by "SUV".
    BW = "bw"
    #: Lean body mass after James (g/mL); the SUL of PERCIST 1.0.
    LBM = "lbm"
    #: Lean body mass after Janmahasatian (g/mL).
    LBM_JANMAHASATIAN = "lbm-janma"
    #: Body surface area after Du Bois (cm²/mL).
    BSA = "bsa"
    #: Ideal body weight after Devine (g/mL).
    IBW = "ibw"

    @property
    def unit(self) -> str:
        """UCUM unit of SUVs of this type."""
        return "cm2/mL" if self is SuvType.BSA else "g/mL"


class Sex(StrEnum):
    """Patient sex as the body-size formulas need it (DICOM PatientSex)."""

    MALE = "M"
    FEMALE = "F"


@dataclass(frozen=True)
class BodySize:
    """Patient weight, height and sex, validated on construction.

    Parameters
    ----------
    weight_kg
        PatientWeight (0010,1030), kg.
    height_m
        PatientSize (0010,1020), m; needed for every type but SUVbw.
    sex
        PatientSex (0010,0040); needed for SUVlbm and SUVibw.
    """

    weight_kg: float
    height_m: float | None = None
    sex: Sex | None = None

    def __post_init__(self) -> None:
        if not 0.5 <= self.weight_kg <= 500:
            raise SuvError(
                f"PatientWeight (0010,1030) is {self.weight_kg:g} kg, outside 0.5-500 kg; "
                "correct the patient weight before computing SUV"
            )
        if self.height_m is not None and not 0.2 <= self.height_m <= 2.8:
            raise SuvError(
                f"PatientSize (0010,1020) is {self.height_m:g} m, outside 0.2-2.8 m; "
                "correct the patient height (in metres)"
            )

    def normaliser_g(self, suv_type: SuvType) -> float:
        """The body measure that ``suv_type`` divides by: g, or cm² for SUVbsa.

        Raises
        ------
        SuvError
            If the height or sex that the type needs is missing, or the formula gives a
            non-positive value.
        """
        weight = self.weight_kg
        if suv_type is SuvType.BW:
            return weight * 1000.0
        height_cm = self._height_cm(suv_type)
        if suv_type is SuvType.BSA:
            return 0.007184 * weight**0.425 * height_cm**0.725 * 1e4
        sex = self._sex(suv_type)
        male = sex is Sex.MALE
        if suv_type is SuvType.LBM:
            ratio = (weight / height_cm) ** 2
            kg = 1.10 * weight - 128 * ratio if male else 1.07 * weight - 148 * ratio
        elif suv_type is SuvType.LBM_JANMAHASATIAN:
            bmi = weight / (height_cm / 100) ** 2
            kg = 9270 * weight / ((6680 + 216 * bmi) if male else (8780 + 244 * bmi))
        else:
            kg = (48.0 + 1.06 * (height_cm - 152)) if male else (45.5 + 0.91 * (height_cm - 152))
        if kg <= 0:
            raise SuvError(
                f"SUV{suv_type.value} formula gives {kg:.1f} kg for PatientWeight {weight:g} kg "
                f"and PatientSize {height_cm / 100:g} m; the formula does not apply, use SUVbw"
            )
        return kg * 1000.0

    def _height_cm(self, suv_type: SuvType) -> float:
        if self.height_m is None:
            raise SuvError(
                f"SUV{suv_type.value} needs PatientSize (0010,1020), which is missing or empty; "
                "use SUVbw or add the patient height"
            )
        return self.height_m * 100.0

    def _sex(self, suv_type: SuvType) -> Sex:
        if self.sex is None:
            raise SuvError(
                f"SUV{suv_type.value} needs PatientSex (0010,0040) M or F; "
                "use SUVbw or SUVbsa, or add the patient sex"
            )
        return self.sex
