"""Body-size normalisers for the SUV types: weight, lean body mass, surface area, ideal weight.

Every SUV type divides the activity concentration by the injected dose per unit of some body
measure, so ``SUV_type = SUVbw × normaliser(type) / weight``. The formulas are those of DICOM
PS3.3 C.8.9.1.1.3 (SUV Type (0054,1006)) as the oncoray SUV manual states them
(``suv-dro/docs/suv-manual.docx``, section "Units = GML"), W in kg and H in cm:

* ``LBM`` (James as modified by Morgan): men ``1.10 W − 120 (W/H)²``, women
  ``1.07 W − 148 (W/H)²``;
* ``LBMJAMES128`` (James 1976, the SUL of PERCIST 1.0): men ``1.10 W − 128 (W/H)²``, women
  ``1.07 W − 148 (W/H)²``;
* ``LBMJANMA`` (Janmahasatian et al. 2005), BMI = W / (H/100)²: men
  ``9270 W / (6680 + 216 BMI)``, women ``9270 W / (8780 + 244 BMI)``;
* ``IBW`` (Devine): men ``48.0 + 1.06 (H − 152)``, women ``45.5 + 0.91 (H − 152)``;
* ``BSA`` (Du Bois and Du Bois 1916): ``0.007184 W^0.425 H^0.725`` m², used in cm².

The masses are used in g and the surface in cm², as SUVs in g/mL and cm²/mL need. PatientSex
``O`` (other) takes the mean of the male and female values, as the manual proposes; the
normaliser says so in its ``note``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from service.dicom.defined_terms import PatientSex
from service.errors import SuvError


class SuvType(StrEnum):
    """What the activity is normalised by (fedseg's names; :attr:`dicom_term` gives DICOM's)."""

    #: Body weight (g/mL); the default and what PET vendors mean by "SUV".
    BW = "bw"
    #: Lean body mass, DICOM ``LBM``: James as modified by Morgan (120 for men) (g/mL).
    LBM = "lbm"
    #: Lean body mass, DICOM ``LBMJAMES128``: James with 128 for men, PERCIST's SUL (g/mL).
    LBM_JAMES128 = "lbm-james128"
    #: Lean body mass after Janmahasatian, DICOM ``LBMJANMA`` (g/mL).
    LBM_JANMAHASATIAN = "lbm-janma"
    #: Ideal body weight after Devine, DICOM ``IBW`` (g/mL).
    IBW = "ibw"
    #: Body surface area after Du Bois, DICOM ``BSA`` (cm²/mL).
    BSA = "bsa"

    @property
    def unit(self) -> str:
        """UCUM unit of SUVs of this type."""
        return "cm2/mL" if self is SuvType.BSA else "g/mL"

    @property
    def dicom_term(self) -> str:
        """The SUV Type (0054,1006) defined term of this type."""
        return _DICOM_TERMS[self]

    @classmethod
    def from_dicom(cls, term: str) -> SuvType:
        """The type named by an SUV Type (0054,1006) value.

        Raises
        ------
        SuvError
            If ``term`` is not one of the defined terms.
        """
        text = term.strip().upper()
        for suv_type, dicom in _DICOM_TERMS.items():
            if dicom == text:
                return suv_type
        known = ", ".join(_DICOM_TERMS.values())
        raise SuvError(f"SUVType (0054,1006) is {text!r}; the defined terms are {known}")


_DICOM_TERMS = {
    SuvType.BW: "BW",
    SuvType.LBM: "LBM",
    SuvType.LBM_JAMES128: "LBMJAMES128",
    SuvType.LBM_JANMAHASATIAN: "LBMJANMA",
    SuvType.IBW: "IBW",
    SuvType.BSA: "BSA",
}
_SEXED = (SuvType.LBM, SuvType.LBM_JAMES128, SuvType.LBM_JANMAHASATIAN, SuvType.IBW)


@dataclass(frozen=True)
class Normaliser:
    """The body measure an SUV type divides by: g (cm² for SUVbsa), and how it was chosen."""

    value: float
    note: str = ""


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
        PatientSex (0010,0040); needed for the lean body masses and SUVibw.
    """

    weight_kg: float
    height_m: float | None = None
    sex: PatientSex | None = None

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
        """The body measure that ``suv_type`` divides by: g, or cm² for SUVbsa."""
        return self.normaliser(suv_type).value

    def normaliser(self, suv_type: SuvType) -> Normaliser:
        """The body measure that ``suv_type`` divides by, with a note on sex ``O``.

        Raises
        ------
        SuvError
            If the height or sex that the type needs is missing, or the formula gives a
            non-positive value.
        """
        suv_type = SuvType(suv_type)
        if suv_type is SuvType.BW:
            return Normaliser(self.weight_kg * 1000.0)
        height_cm = self._height_cm(suv_type)
        if suv_type is SuvType.BSA:
            m2 = 0.007184 * self.weight_kg**0.425 * height_cm**0.725
            return Normaliser(m2 * 1e4)
        sex = self._sex(suv_type)
        note = ""
        if sex is PatientSex.OTHER:
            kg = (
                _sexed_kg(suv_type, PatientSex.MALE, self.weight_kg, height_cm)
                + _sexed_kg(suv_type, PatientSex.FEMALE, self.weight_kg, height_cm)
            ) / 2
            note = (
                f"PatientSex O: mean of the male and female {suv_type.dicom_term} values "
                "(oncoray SUV manual)"
            )
        else:
            kg = _sexed_kg(suv_type, sex, self.weight_kg, height_cm)
        if kg <= 0:
            raise SuvError(
                f"SUV{suv_type.value} formula gives {kg:.1f} kg for PatientWeight "
                f"{self.weight_kg:g} kg and PatientSize {height_cm / 100:g} m; the formula does "
                "not apply, use SUVbw"
            )
        return Normaliser(kg * 1000.0, note)

    def _height_cm(self, suv_type: SuvType) -> float:
        if self.height_m is None:
            raise SuvError(
                f"SUV{suv_type.value} needs PatientSize (0010,1020), which is missing, empty or "
                "not positive; use SUVbw or add the patient height"
            )
        return self.height_m * 100.0

    def _sex(self, suv_type: SuvType) -> PatientSex:
        if self.sex is None:
            raise SuvError(
                f"SUV{suv_type.value} needs PatientSex (0010,0040) M, F or O, which is missing "
                "or another value; use SUVbw or SUVbsa, or correct the patient sex"
            )
        return self.sex


def _sexed_kg(suv_type: SuvType, sex: PatientSex, weight: float, height_cm: float) -> float:
    """Lean body mass or ideal body weight (kg) of one sex."""
    if suv_type not in _SEXED:
        raise ValueError(f"{suv_type} does not depend on sex")
    male = sex is PatientSex.MALE
    ratio = (weight / height_cm) ** 2
    if suv_type is SuvType.LBM:
        return 1.10 * weight - 120 * ratio if male else 1.07 * weight - 148 * ratio
    if suv_type is SuvType.LBM_JAMES128:
        return 1.10 * weight - 128 * ratio if male else 1.07 * weight - 148 * ratio
    if suv_type is SuvType.LBM_JANMAHASATIAN:
        bmi = weight / (height_cm / 100) ** 2
        return 9270 * weight / ((6680 + 216 * bmi) if male else (8780 + 244 * bmi))
    return (48.0 + 1.06 * (height_cm - 152)) if male else (45.5 + 0.91 * (height_cm - 152))
