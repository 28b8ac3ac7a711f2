"""The demo page in a real headless Chromium (Debian's chromium + chromium-driver)."""
import os
import shutil

import pytest

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip("no headless browser: install Debian's chromium and chromium-driver "
                    "(.ci/run does)")
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    yield driver
    driver.quit()


def test_demo_page_highlights_entities(browser, gunicorn_server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(gunicorn_server.url + "/")
    box = browser.find_element(By.ID, "text")
    box.clear()
    text = "😀 Maria Lopez visited Lisbon with Tom Baker ."
    box.send_keys(text)
    browser.find_element(By.ID, "tag").click()
    marks = WebDriverWait(browser, 10).until(
        EC.presence_of_all_elements_located((By.CSS_SELECTOR, "#output mark.ent")))
    found = {(m.get_attribute("data-label"), m.text.rsplit("\n", 1)[0].replace(
        m.get_attribute("data-label"), "").strip()) for m in marks}
    assert ("PER", "Maria Lopez") in found, found
    assert all("score" in m.get_attribute("title") for m in marks)
    # the whole text is shown back, emoji included (code-point offsets sliced correctly)
    output = browser.find_element(By.ID, "output").text
    assert output.startswith("😀 Maria Lopez")
    browser.save_screenshot(os.environ.get("FASTNER_SCREENSHOT", str(tmp_path / "demo.png")))
