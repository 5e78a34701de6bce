"""Reference formulas for the calculation records in instruction_data/fin_data.json.

A calculation record carries `"calc": {"kind": K, "params": {...}, "expect": {...}}`;
test_calculations.py recomputes every `expect` figure with KINDS[K](**params) and
checks that the answer text states it. Money in yuan (or the stated currency),
rates as fractions (0.042 for 4.2%); results named `*_pct` are percentages (5.1 for 5.1%).
"""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")

# 综合所得年度税率表 (个人所得税法附表一, in force since 2019-01-01): upper bound of taxable income, rate,
# quick deduction.
ANNUAL_BRACKETS = [(36000, 0.03, 0), (144000, 0.10, 2520), (300000, 0.20, 16920), (420000, 0.25, 31920),
                   (660000, 0.30, 52920), (960000, 0.35, 85920), (float("inf"), 0.45, 181920)]
BASIC_DEDUCTION = 60000  # 基本减除费用, 每年6万元


def equal_installment(principal, annual_rate, months):
    """等额本息: the same payment every month."""
    i = annual_rate / 12
    payment = principal * i * (1 + i) ** months / ((1 + i) ** months - 1)
    return {"monthly_payment": payment, "total_interest": payment * months - principal,
            "total_payment": payment * months}


def equal_principal(principal, annual_rate, months):
    """等额本金: the same principal every month, interest on what is left."""
    i = annual_rate / 12
    return {"first_payment": principal / months + principal * i, "monthly_decrease": principal / months * i,
            "last_payment": principal / months * (1 + i), "total_interest": principal * i * (months + 1) / 2}


def compound_interest(principal, annual_rate, years, periods_per_year=1):
    final = principal * (1 + annual_rate / periods_per_year) ** (periods_per_year * years)
    return {"final_amount": final, "interest": final - principal}


def simple_interest(principal, annual_rate, days, day_basis=365):
    interest = principal * annual_rate * days / day_basis
    return {"interest": interest, "final_amount": principal + interest}


def fund_subscription(amount, fee_rate, nav):
    """基金申购, 外扣法 (价外法): net = amount / (1 + fee rate)."""
    net = amount / (1 + fee_rate)
    return {"net_amount": net, "fee": amount - net, "shares": net / nav}


def fund_redemption(shares, nav, fee_rate):
    gross = shares * nav
    return {"gross_amount": gross, "fee": gross * fee_rate, "net_amount": gross * (1 - fee_rate)}


def annual_income_tax(annual_income, special_deductions=0, additional_deductions=0, other_deductions=0):
    """综合所得 annual tax: income less 60000 and the deductions, by the 7-bracket table."""
    taxable = max(0.0, annual_income - BASIC_DEDUCTION - special_deductions - additional_deductions - other_deductions)
    rate, quick = next((r, q) for bound, r, q in ANNUAL_BRACKETS if taxable <= bound)
    return {"taxable_income": taxable, "tax": taxable * rate - quick}


def deduction_tax_saving(annual_income, special_deductions=0, additional_deductions=0, other_deductions=0,
                         extra_deduction=0):
    """Tax before and after one more deduction (e.g. 个人养老金 12000), both by the progressive table.

    The saving is marginal rate x deduction only when the deduction does not cross a bracket boundary.
    """
    before = annual_income_tax(annual_income, special_deductions, additional_deductions, other_deductions)
    after = annual_income_tax(annual_income, special_deductions, additional_deductions,
                              other_deductions + extra_deduction)
    return {"taxable_income": before["taxable_income"], "tax": before["tax"],
            "taxable_income_after": after["taxable_income"], "tax_after": after["tax"],
            "tax_saved": before["tax"] - after["tax"]}


def return_rate(cost, value, years, income=0):
    """Holding-period return and annualised (geometric) return, in percent."""
    total = (value + income - cost) / cost
    return {"profit": value + income - cost, "total_return_pct": total * 100,
            "annualized_return_pct": ((1 + total) ** (1 / years) - 1) * 100}


def futures_position(price, multiplier, lots, margin_rate):
    value = price * multiplier * lots
    return {"contract_value": value, "margin": value * margin_rate}


def futures_pnl(entry_price, exit_price, multiplier, lots, direction="long"):
    sign = 1 if direction == "long" else -1
    return {"pnl": sign * (exit_price - entry_price) * multiplier * lots}


def currency_conversion(amount, rate):
    """amount in one currency times the quoted rate (units of the other currency per unit)."""
    return {"converted": amount * rate}


def installment_fee(principal, periods, fee_rate_per_period):
    """信用卡/消费分期: fee charged on the full principal every period."""
    fee = principal * fee_rate_per_period * periods
    return {"total_fee": fee, "per_period_payment": principal / periods + principal * fee_rate_per_period,
            "nominal_annual_rate_pct": fee_rate_per_period * 12 * 100}


def pension_tax_saving(contribution, marginal_rate, withdrawal_rate=0.03):
    """个人养老金: deduction saves tax at the marginal rate; withdrawals are taxed at 3%."""
    saved = contribution * marginal_rate
    taxed = contribution * withdrawal_rate
    return {"tax_saved": saved, "withdrawal_tax": taxed, "net_saving": saved - taxed}


def bond_yield(price, coupon_rate, face=100, years_to_maturity=1):
    """Current yield and the simple (non-compounded) yield to maturity, in percent."""
    coupon = face * coupon_rate
    simple = (coupon + (face - price) / years_to_maturity) / price
    return {"current_yield_pct": coupon / price * 100, "simple_ytm_pct": simple * 100}


def price_limits(prev_closes, limit_rates):
    """涨跌停价: previous close x (1 +/- limit), rounded half up to 0.01 yuan, for each stock in turn (1, 2, ...)."""
    out = {}
    for k, (close, rate) in enumerate(zip(prev_closes, limit_rates), start=1):
        close, rate = Decimal(str(close)), Decimal(str(rate))
        out[f"limit_up_{k}"] = float((close * (1 + rate)).quantize(CENT, ROUND_HALF_UP))
        out[f"limit_down_{k}"] = float((close * (1 - rate)).quantize(CENT, ROUND_HALF_UP))
    return out


def financial_ratios(**items):
    """Ratios from statement items; only those whose inputs are given are returned (percent where *_pct)."""
    out = {}
    pairs = {
        "current_ratio": ("current_assets", "current_liabilities", 1),
        "debt_to_asset_pct": ("total_liabilities", "total_assets", 100),
        "gross_margin_pct": ("gross_profit", "revenue", 100),
        "net_margin_pct": ("net_profit", "revenue", 100),
        "roe_pct": ("net_profit", "equity", 100),
        "cash_to_profit_ratio": ("operating_cash_flow", "net_profit", 1),
    }
    for name, (num, den, scale) in pairs.items():
        if num in items and den in items:
            out[name] = items[num] / items[den] * scale
    if {"current_assets", "inventory", "current_liabilities"} <= items.keys():
        out["quick_ratio"] = (items["current_assets"] - items["inventory"]) / items["current_liabilities"]
    return out


KINDS = {f.__name__: f for f in (
    equal_installment, equal_principal, compound_interest, simple_interest, fund_subscription, fund_redemption,
    annual_income_tax, deduction_tax_saving, return_rate, futures_position, futures_pnl, currency_conversion,
    installment_fee, pension_tax_saving, bond_yield, price_limits, financial_ratios)}


def spellings(name: str, value: float) -> set[str]:
    """How a figure may be written in an answer: 4890.17, 4,890.17, 76.05万 (>= 10000), 5.10% (for *_pct)."""
    forms = {f"{value:.2f}", f"{value:,.2f}"}
    if abs(value - round(value)) < 0.005:
        forms |= {f"{round(value)}", f"{round(value):,}"}
    if abs(value) >= 10000:
        forms.add(f"{value / 10000:.2f}万")
        if abs(value / 10000 - round(value / 10000, 1)) < 0.0005:
            forms.add(f"{value / 10000:.1f}万")
    if name.endswith("_pct"):
        forms = {f + "%" for f in forms if "万" not in f and "," not in f}
    return forms
